"""No port consumer runs under the receiver's lock: handlers that take a user's lock, swept.

Without Ray, on real threads and loops, as in the main isolate: batches
reach one receiver from an event loop (a spawned isolate's deliveries, the
main isolate's background loop) and from plain threads (a direct channel's
reading thread, the completions thread). Port handlers on that loop take
user locks and send (their messages come back through a reading thread);
talkers, each on a loop of its own, hold those locks while they send and
wait for the answer, which a reading thread hands to the receiver. Had the
receiver called handlers under its lock, a handler waiting for a talker's
lock would hold up the reading thread, and so the talker's answer, for good.

Every seed checks that nobody waits in vain and that every port gets each
sender's messages once, in the order sent.
"""

from __future__ import annotations

import asyncio
import os
import queue
import random
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rayisolates._context.porttable import PortTable
from rayisolates._context.receiver import Receiver
from rayisolates._transport.codec import INLINE
from rayisolates._transport.mailbox import Mailbox
from rayisolates._transport.wire import Item

SEEDS = int(os.environ.get("RECEIVER_LOCK_SEEDS", "40"))
WAIT_SECONDS = 5.0


class LoopThread:
    """An event loop running in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class Reader:
    """A plain thread that hands batches to the receiver, as a reading thread does."""

    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._batches: queue.SimpleQueue[tuple[str, int, list[Item]] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, sender: str, seq: int, items: list[Item]) -> None:
        self._batches.put((sender, seq, items))

    def _run(self) -> None:
        while (batch := self._batches.get()) is not None:
            self._receiver.accept(*batch)

    def stop(self) -> None:
        self._batches.put(None)
        self.thread.join(10)


def run(consumer: Callable[[Any], object], message: Any) -> None:
    consumer(message)


def inline(port_id: int, value: Any) -> Item:
    return (port_id, INLINE, value, None)


class Talker:
    """On a loop of its own: holds a lock while it sends, and while it waits for the answer."""

    def __init__(self, name: str, lock: threading.Lock, rounds: int) -> None:
        self.name = name
        self.lock = lock
        self.rounds = rounds
        self.loop = LoopThread()
        self.waiters: dict[int, asyncio.Future[int]] = {}
        self.answered: list[int] = []
        self.failure: str | None = None

    def on_answer(self, message: int) -> None:
        waiter = self.waiters.get(message)
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    async def talk(self, send: Callable[[str, int], None]) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.rounds):
            with self.lock:
                waiter = self.waiters[i] = loop.create_future()
                send(self.name, i)
                try:
                    self.answered.append(await asyncio.wait_for(waiter, WAIT_SECONDS))
                except TimeoutError:
                    self.failure = f"{self.name} waited in vain for answer {i}"
                    return


class Scenario:
    """One seed's receiver, ports, reading threads, locks, floods and talkers."""

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.dispatch = LoopThread()
        self.errors: list[BaseException] = []
        self.ports = PortTable()
        self.receiver = Receiver(self.ports, self.dispatch.loop, self.errors.append)
        self.readers = [Reader(self.receiver) for _ in range(rng.randint(1, 3))]
        self.locks = [threading.Lock() for _ in range(rng.randint(1, 3))]
        self._next_seq: dict[str, int] = {}
        self._seq_lock = threading.Lock()
        self.got: dict[str, list[int]] = {}
        self._got_lock = threading.Lock()
        self.answers = self.port(self.dispatch.loop, lambda m: self.record("answers", m))
        self.flooded = [
            self.port(self.dispatch.loop, self.flood_handler(f"flooded{k}", rng.choice(self.locks)))
            for k in range(rng.randint(1, 3))
        ]
        self.floods = rng.randint(50, 300)
        self.talkers = [
            Talker(f"talker{t}", rng.choice(self.locks), rng.randint(5, 40))
            for t in range(rng.randint(1, 3))
        ]
        self.talker_ports = {
            talker.name: self.port(talker.loop.loop, talker.on_answer) for talker in self.talkers
        }

    def port(self, loop: asyncio.AbstractEventLoop, handler: Callable[[Any], None]) -> int:
        mailbox: Mailbox[Any] = Mailbox(lambda: handler, run)
        mailbox.bind(loop)
        return self.ports.open(mailbox, keep_alive=True)

    def seq(self, sender: str) -> int:
        with self._seq_lock:
            seq = self._next_seq.get(sender, 0)
            self._next_seq[sender] = seq + 1
            return seq

    def record(self, port: str, message: int) -> None:
        with self._got_lock:
            self.got.setdefault(port, []).append(message)

    def flood_handler(self, name: str, lock: threading.Lock) -> Callable[[Any], None]:
        """Takes ``lock``; half the time answers through a reading thread, as a send does."""

        def handle(message: int) -> None:
            with lock:
                self.record(name, message)
                if self.rng.random() < 0.5:
                    sender = f"{name}-answers"
                    batch = [inline(self.answers, message)]
                    self.rng.choice(self.readers).put(sender, self.seq(sender), batch)

        return handle

    def flood(self) -> None:
        """Batches to the flooded ports: on the dispatch loop, or from a reading thread."""
        on_loop = self.rng.random() < 0.8
        sent = 0
        while sent < self.floods:
            size = min(self.rng.randint(1, 8), self.floods - sent)
            items = [inline(self.rng.choice(self.flooded), sent + j) for j in range(size)]
            sent += size
            seq = self.seq("flood")
            if on_loop:
                self.dispatch.loop.call_soon_threadsafe(self.receiver.accept, "flood", seq, items)
            else:
                self.rng.choice(self.readers).put("flood", seq, items)

    def send_to_talker(self, name: str, i: int) -> None:
        """A talker's request, answered through a reading thread."""
        self.rng.choice(self.readers).put(
            name, self.seq(name), [inline(self.talker_ports[name], i)]
        )

    def flooded_handled(self) -> int:
        with self._got_lock:
            return sum(len(v) for k, v in self.got.items() if k.startswith("flooded"))

    def stop(self) -> None:
        for reader in self.readers:
            reader.stop()
        for loop_thread in [self.dispatch, *(talker.loop for talker in self.talkers)]:
            loop_thread.stop()


@pytest.fixture(autouse=True)
def switch_often() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_handlers_taking_locks_never_hold_up_the_receiver(seed: int) -> None:
    scenario = Scenario(seed)
    try:
        talking = [
            asyncio.run_coroutine_threadsafe(talker.talk(scenario.send_to_talker), talker.loop.loop)
            for talker in scenario.talkers
        ]
        scenario.flood()
        for future in talking:
            future.result(WAIT_SECONDS * 3)
        failures = [talker.failure for talker in scenario.talkers if talker.failure]
        assert not failures, f"seed {seed}: {failures}"
        for talker in scenario.talkers:
            assert talker.answered == list(range(talker.rounds)), f"seed {seed}"
        settled = threading.Event()
        for _ in range(500):
            if scenario.flooded_handled() == scenario.floods:
                break
            settled.wait(0.01)
        assert scenario.flooded_handled() == scenario.floods, f"seed {seed}: floods lost"
        for name, messages in scenario.got.items():
            if name.startswith("flooded"):
                assert messages == sorted(messages), f"seed {seed}: {name} out of order"
        assert not scenario.errors
    finally:
        scenario.stop()
