"""A port's handler never runs under a lock of the transport: the family, swept.

The transport hands what arrives to a port's queue under its own lock and
calls the port's handler only after releasing it, so a handler that takes a
user's lock cannot hold up the transport while another thread holds that
lock. Each seed mixes every carrier: the isolate's own port, the main
isolate, another isolate (over a direct channel or Ray; on this node or
another), and messages that ride the object store (whose deliveries the
receiving isolate dispatches on its own event loop).

- In the main isolate, a flooded port's handler takes a lock and sends;
  meanwhile a thread running its own event loop holds that lock while it
  sends to another isolate and waits for the answer (which the transport's
  own threads hand to its port).
- In a spawned isolate, port handlers take a lock and send over every
  carrier while a thread of the isolate, holding that lock, sends too.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from rayisolates import Isolate, RawReceivePort, ReceivePort, SendPort

from . import entries
from .support import run

pytestmark = pytest.mark.timeout(150)

SEEDS = int(os.environ.get("LOCK_SEEDS", "8"))
ANSWER_SECONDS = 30.0


async def wait(answer: Any) -> Any:
    return await asyncio.wait_for(answer, ANSWER_SECONDS)


@pytest.fixture(scope="module")
def answering(ray_runtime: dict[str, Any]) -> Iterator[SendPort[Any]]:
    """An isolate that answers ``(tag, i, port, padding)`` with ``(tag, i)`` to ``port``."""
    replies: ReceivePort[Any] = ReceivePort("answering")

    async def start() -> SendPort[Any]:
        await Isolate.spawn(entries.answer_each, replies.send_port, debug_name="answering")
        port: SendPort[Any] = await anext(replies)
        return port

    port = run(start())
    replies.close()
    yield port
    port.send(None)


class Recorder:
    """What one port's handler got, under the shared lock; ``complete`` once all are in."""

    def __init__(self, lock: threading.Lock, expected: int) -> None:
        self.lock = lock
        self.got: list[Any] = []
        self.expected = expected
        self.complete = threading.Event()
        if expected == 0:
            self.complete.set()

    def add(self, message: Any) -> None:
        self.got.append(message)
        if len(self.got) == self.expected:
            self.complete.set()

    def handler(self, message: Any) -> None:
        with self.lock:
            self.add(message)


class Talker:
    """A thread with an event loop of its own that holds ``lock`` while it sends each
    round and, where the answer reaches it through the transport's own threads (a direct
    channel's reading thread, the completions thread), while it waits for the answer."""

    def __init__(self, lock: threading.Lock, answering: SendPort[Any], carriers: list[str]):
        self.lock = lock
        self.answering = answering
        self.carriers = carriers
        self.answers: list[Any] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self.talk())
        except BaseException as error:
            self.error = error

    async def talk(self) -> None:
        answers: ReceivePort[Any] = ReceivePort("talker")  # consumed on this thread's loop
        for i, carrier in enumerate(self.carriers):
            with self.lock:
                if carrier == "own":
                    answers.send_port.send(("talker", i))
                else:
                    padding = bytes(120 * 1024 if carrier == "stored" else 8)
                    self.answering.send(("talker", i, answers.send_port, padding))
                    self.answers.append(await wait(anext(answers)))
            if carrier == "own":
                # The main isolate's own sends are handed over on its background loop,
                # where the flood's handler may wait for this lock: wait without it.
                self.answers.append(await wait(anext(answers)))
        answers.close()


@pytest.mark.parametrize("seed", range(SEEDS))
def test_main_isolate_handlers_take_a_lock_its_holder_waits_under(
    answering: SendPort[Any], seed: int
) -> None:
    rng = random.Random(seed)
    floods, rounds = rng.randint(150, 400), rng.randint(40, 120)
    lock = threading.Lock()
    flooded_got = Recorder(lock, floods)
    handler_sent = Recorder(lock, floods)  # one message per flood message, over some carrier
    own = RawReceivePort(handler_sent.handler, "own")
    answered = RawReceivePort(handler_sent.handler, "answered")
    carriers = [rng.choice(["own", "other", "stored"]) for _ in range(floods)]

    def on_flood(message: Any) -> None:
        i = message[0]
        with lock:
            flooded_got.add(i)
            carrier = carriers[i]
            if carrier == "own":
                own.send_port.send(("handler", i))
            else:
                padding = bytes(120 * 1024 if carrier == "stored" else 8)
                answering.send(("handler", i, answered.send_port, padding))

    flooded = RawReceivePort(on_flood, "flooded")
    talker = Talker(
        lock, answering, [rng.choice(["other", "stored", "own"]) for _ in range(rounds)]
    )
    thread = threading.Thread(target=talker.run, daemon=True)
    run(Isolate.spawn(entries.flood_mixed, (flooded.send_port, floods, seed)))
    thread.start()
    thread.join(90)
    assert not thread.is_alive(), "the lock's holder never got its answer"
    error = talker.error
    assert error is None, (
        f"seed {seed}: the lock's holder waited in vain ({type(error).__name__}) after "
        f"{len(talker.answers)} of {rounds} answers"
    )
    assert talker.answers == [("talker", i) for i in range(rounds)]
    assert flooded_got.complete.wait(60), f"{len(flooded_got.got)} of {floods} floods handled"
    assert handler_sent.complete.wait(60), f"{len(handler_sent.got)} of {floods} answered"
    assert flooded_got.got == list(range(floods))
    assert sorted(i for _, i in handler_sent.got) == list(range(floods))
    for port in (flooded, own, answered):
        port.close()


@pytest.mark.parametrize("seed", range(SEEDS))
def test_spawned_isolate_handlers_take_a_lock_its_threads_send_under(
    answering: SendPort[Any], seed: int
) -> None:
    rng = random.Random(seed)
    rounds = rng.randint(40, 150)
    elsewhere = rng.random() < 0.5  # on another node: no direct channels to it
    options: dict[str, Any] = {"resources": {"node_a": 1}} if elsewhere else {}
    report: ReceivePort[Any] = ReceivePort("report")

    async def main() -> tuple[list[Any], dict[str, list[Any]]]:
        await Isolate.spawn(
            entries.locked_talker, (report.send_port, answering, rounds, seed), **options
        )
        kind, inbox = await anext(report)
        assert kind == "inbox"
        for i in range(rounds):
            inbox.send(i)
        to_main: list[Any] = []
        async for message in report:
            if message[0] == "done":
                return to_main, message[1]
            to_main.append(message[1:])
        raise AssertionError("the report port closed before the isolate's report")

    to_main, got = run(main(), timeout=120)
    report.close()
    assert got["inbox"] == list(range(rounds))
    for kind in ("own", "answers"):
        assert len(got[kind]) == 2 * rounds, kind
        for tag in ("thread", "handler"):
            assert sorted(i for t, i in got[kind] if t == tag) == list(range(rounds)), kind
    for tag in ("thread", "handler"):  # from one sender to one port: in the order sent
        own_order = [i for t, i in got["own"] if t == tag]
        assert own_order == list(range(rounds))
        main_order = [i for t, i in to_main if t == tag]
        assert main_order == sorted(main_order)
