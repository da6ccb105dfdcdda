"""Receiver: decoding, ordering, pausing and control records, without Ray."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from rayisolates._capability import Capability
from rayisolates._context.porttable import PortTable
from rayisolates._context.receiver import Receiver
from rayisolates._transport.codec import INLINE
from rayisolates._transport.mailbox import Mailbox
from rayisolates._transport.wire import CONTROL_PORT, Item


class Port:
    """A port's mailbox, read at once (no loop is bound: what is put stays queued)."""

    def __init__(self) -> None:
        self.mailbox: Mailbox[Any] = Mailbox(lambda: None, lambda consumer, message: None)

    @property
    def got(self) -> list[Any]:
        return list(self.mailbox._queue)


def inline(port_id: int, value: Any) -> Item:
    return (port_id, INLINE, value, None)


def make(on_control: Any = None) -> tuple[Receiver, Port, int, list[BaseException]]:
    ports = PortTable()
    port = Port()
    port_id = ports.open(port.mailbox, keep_alive=True)
    errors: list[BaseException] = []
    loop = asyncio.new_event_loop()
    return Receiver(ports, loop, errors.append, on_control), port, port_id, errors


def test_batches_reach_their_port_in_order_once() -> None:
    receiver, port, port_id, _ = make()
    receiver.accept("a", 1, [inline(port_id, 2)])
    receiver.accept("a", 0, [inline(port_id, 1)])
    receiver.accept("a", 0, [inline(port_id, 1)])
    assert port.got == [1, 2]
    assert receiver.received("a") == 1 and receiver.received_messages == 2


def test_messages_to_a_closed_port_are_dropped() -> None:
    receiver, port, port_id, _ = make()
    receiver.accept("a", 0, [inline(port_id + 1, "nobody")])
    assert port.got == []


def test_pause_holds_messages_until_every_pause_is_lifted() -> None:
    receiver, port, port_id, _ = make()
    first, second = Capability(), Capability()
    receiver.pause(first)
    receiver.pause(second)
    receiver.accept("a", 0, [inline(port_id, 1), inline(port_id, 1)])
    assert not receiver.resume(first)
    assert port.got == []
    assert (receiver.held(), receiver.received_messages) == (2, 0)
    assert receiver.resume(second)
    receiver.accept("a", 1, [inline(port_id, 2)])
    assert port.got == [1, 1, 2]
    assert (receiver.held(), receiver.received_messages) == (0, 3)


def test_control_records_act_while_paused() -> None:
    records: list[Any] = []
    receiver, port, port_id, _ = make(records.append)
    receiver.pause(Capability())
    receiver.accept("x/control", 0, [inline(CONTROL_PORT, "resume, please")])
    receiver.accept("a", 0, [inline(port_id, 1)])
    assert records == ["resume, please"] and port.got == []


def test_a_message_that_cannot_be_rebuilt_is_reported_and_the_sequence_goes_on() -> None:
    receiver, port, port_id, errors = make()
    receiver.accept("a", 0, [(port_id, 1, b"not a pickle", None)])
    receiver.accept("a", 1, [inline(port_id, "after")])
    assert len(errors) == 1 and port.got == ["after"]


def test_a_stopped_receiver_dispatches_nothing() -> None:
    receiver, port, port_id, _ = make()
    receiver.stop()
    receiver.accept("a", 0, [inline(port_id, 1)])
    assert port.got == []


def test_control_records_act_where_they_stand_among_messages() -> None:
    pause = Capability()
    seen: list[list[Any]] = []
    receiver: Receiver

    def on_control(record: Any) -> None:
        if record == "pause":
            receiver.pause(pause)
        elif record == "resume":
            receiver.resume(pause)
        else:
            seen.append(port.got)

    receiver, port, port_id, _ = make(on_control)
    control = [(CONTROL_PORT, INLINE, name, None) for name in ("pause", "resume", "look")]
    receiver.accept("a", 0, [inline(port_id, 1), control[0], inline(port_id, 2), control[2]])
    assert port.got == [1] and seen == [[1]]  # 2 came after the pause: held
    receiver.accept("a", 1, [control[1], control[2], inline(port_id, 3)])
    assert port.got == [1, 2, 3] and seen == [[1], [1, 2]]


Arrival = tuple[str, int, list[Item]]


def random_arrivals(rng: random.Random, port_id: int) -> list[Arrival]:
    """One to three senders' messages, pauses, resumes, probes and (rarely) kills, cut into
    batches that arrive in random order, a quarter of them twice."""
    numbers = iter(range(10**6))
    batches: list[Arrival] = []
    for sender in ("a", "b", "c")[: rng.randint(1, 3)]:
        stream: list[Item] = []
        for _ in range(rng.randint(1, 30)):
            roll = rng.random()
            if roll < 0.55:
                stream.append(inline(port_id, (sender, next(numbers))))
            elif roll < 0.7:
                stream.append(inline(CONTROL_PORT, ("pause", rng.randrange(3))))
            elif roll < 0.85:
                stream.append(inline(CONTROL_PORT, ("resume", rng.randrange(3))))
            elif roll < 0.98:
                stream.append(inline(CONTROL_PORT, ("probe", next(numbers))))
            else:
                stream.append(inline(CONTROL_PORT, ("kill", 0)))
        count = min(len(stream) - 1, rng.randint(0, 6))
        cuts = sorted(rng.sample(range(1, len(stream)), count))
        for seq, (start, end) in enumerate(zip([0, *cuts], [*cuts, len(stream)], strict=True)):
            batches.append((sender, seq, stream[start:end]))
    arrivals = batches + rng.sample(batches, len(batches) // 4)
    rng.shuffle(arrivals)
    return arrivals


class Model:
    """What a receiver must do with those arrivals: in order per sender, each control
    record acting where it stands."""

    def __init__(self) -> None:
        self.given: list[Any] = []
        self.held: list[Any] = []
        self.probes: dict[int, list[Any]] = {}
        self.pauses: set[int] = set()
        self.stopped = False
        self._next: dict[str, int] = {}
        self._waiting: dict[tuple[str, int], list[Item]] = {}

    def arrive(self, sender: str, seq: int, items: list[Item]) -> None:
        if seq < self._next.setdefault(sender, 0):
            return
        self._waiting[(sender, seq)] = items
        while (sender, self._next[sender]) in self._waiting:
            for port_id, _, value, _ in self._waiting.pop((sender, self._next[sender])):
                self._act(port_id, value)
            self._next[sender] += 1

    def _act(self, port_id: int, value: Any) -> None:
        if self.stopped:
            return
        if port_id != CONTROL_PORT:
            (self.held if self.pauses else self.given).append(value)
            return
        kind, number = value
        if kind == "probe":
            self.probes[number] = list(self.given)
        elif kind == "pause":
            self.pauses.add(number)
        elif kind == "resume":
            self.pauses.discard(number)
            if not self.pauses:
                self.given += self.held
                self.held = []
        else:
            self.stopped = True
            self.held = []


def check_seed(seed: int) -> None:
    rng = random.Random(seed)
    capabilities = [Capability() for _ in range(3)]
    probes: dict[int, list[Any]] = {}

    def on_control(record: Any) -> None:
        kind, number = record
        if kind == "pause":
            receiver.pause(capabilities[number])
        elif kind == "resume":
            receiver.resume(capabilities[number])
        elif kind == "kill":
            receiver.stop()
        else:
            probes[number] = port.got

    receiver, port, port_id, _ = make(on_control)
    model = Model()
    for sender, seq, items in random_arrivals(rng, port_id):
        model.arrive(sender, seq, items)
        receiver.accept(sender, seq, items)
    assert probes == model.probes, f"seed {seed}"
    assert port.got == model.given, f"seed {seed}"
    assert receiver.held() == len(model.held), f"seed {seed}"


def test_random_mixes_of_messages_and_controls_from_several_senders_match_a_model() -> None:
    """Every control record acts exactly where it stands in its sender's sequence: a probe
    sees every message before it that no pause holds, a message after a pause waits for
    the resume, nothing after a kill arrives."""
    for seed in range(300):
        check_seed(seed)
