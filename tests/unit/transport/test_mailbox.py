"""The mailbox keeps arrival order whatever the consumer does meanwhile, on real threads and loops.

The family swept: messages put from a dispatch thread (or on the consumer's
own loop) while another thread sets, replaces and clears the consumer, and
while an iterator moves from one event loop to the next. Every seed checks
that each message reaches exactly one consumer, in the order it was put,
and that no two consumer calls overlap.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rayisolates._transport.mailbox import Mailbox

SEEDS = int(os.environ.get("MAILBOX_SEEDS", "150"))


class LoopThread:
    """An event loop running in its own thread, as the main isolate's background loop does."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, function: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(autouse=True)
def switch_often() -> Iterator[None]:
    """Switch threads every microsecond, so interleavings that are rare in a run happen."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.fixture
def loops() -> Iterator[tuple[LoopThread, LoopThread]]:
    consumer, dispatch = LoopThread(), LoopThread()
    yield consumer, dispatch
    consumer.stop()
    dispatch.stop()


class Consumers:
    """Handlers that record what they got and whether two calls ever overlapped."""

    def __init__(self) -> None:
        self.current: Callable[[int], object] | None = None
        self.got: list[int] = []
        self.active = 0
        self.overlapped = False
        self.all_in = threading.Event()
        self.expected = -1

    def make(self) -> Callable[[int], object]:
        def handler(message: int) -> None:
            self.active += 1
            if self.active > 1:
                self.overlapped = True
            if message % 3 == 0:
                time.sleep(0)  # let another thread in mid-call, if one could be
            self.got.append(message)
            if len(self.got) == self.expected:
                self.all_in.set()
            self.active -= 1

        return handler


def run(consumer: Callable[[int], object], message: int) -> None:
    consumer(message)


def deliver(mailbox: Mailbox[int], messages: list[int]) -> None:
    """What the receiver does: queue (under its lock), then hand over (outside it)."""
    mailbox.put(messages)
    mailbox.hand_over()


def test_handlers_changed_from_another_thread_keep_order(
    loops: tuple[LoopThread, LoopThread],
) -> None:
    consumer_loop, dispatch_loop = loops
    for seed in range(SEEDS):
        check_handlers(seed, consumer_loop, dispatch_loop)


def check_handlers(seed: int, consumer_loop: LoopThread, dispatch_loop: LoopThread) -> None:
    rng = random.Random(seed)
    consumers = Consumers()
    mailbox: Mailbox[int] = Mailbox(lambda: consumers.current, run)
    count = rng.randint(1, 300)
    consumers.expected = count
    same_loop = rng.random() < 0.3  # messages dispatched on the consumer loop itself
    source = consumer_loop if same_loop else dispatch_loop
    bind_late = rng.random() < 0.5
    if not bind_late:
        mailbox.bind(consumer_loop.loop)

    def produce() -> None:
        sent = 0
        while sent < count:
            batch = list(range(sent, min(count, sent + rng.randint(1, 8))))
            source.loop.call_soon_threadsafe(deliver, mailbox, batch)
            sent += len(batch)
            if rng.random() < 0.3:
                time.sleep(rng.random() / 5000)

    producer = threading.Thread(target=produce)
    producer.start()
    for _ in range(rng.randint(0, 12)):
        consumers.current = rng.choice([None, consumers.make(), consumers.make()])
        if consumers.current is not None:
            mailbox.wake()
        if rng.random() < 0.5:
            time.sleep(rng.random() / 2000)
        if bind_late and rng.random() < 0.3:
            mailbox.bind(consumer_loop.loop)
    mailbox.bind(consumer_loop.loop)
    consumers.current = consumers.make()
    mailbox.wake()
    producer.join(10)
    assert consumers.all_in.wait(10), f"seed {seed}: got {len(consumers.got)} of {count}"
    assert consumers.got == list(range(count)), f"seed {seed}"
    assert not consumers.overlapped, f"seed {seed}"


def test_an_iterator_moving_between_loops_keeps_order(
    loops: tuple[LoopThread, LoopThread],
) -> None:
    _, dispatch_loop = loops
    for seed in range(SEEDS // 3):
        check_iterator(seed, dispatch_loop)


def check_iterator(seed: int, dispatch_loop: LoopThread) -> None:
    rng = random.Random(seed)
    waiter: list[asyncio.Future[None]] = []

    def wake() -> None:
        if waiter and not waiter[0].done():
            waiter[0].set_result(None)

    mailbox: Mailbox[int] = Mailbox(lambda: None, run, wake)
    count = rng.randint(1, 200)

    def produce() -> None:
        for message in range(count):
            dispatch_loop.loop.call_soon_threadsafe(deliver, mailbox, [message])
            if rng.random() < 0.2:
                time.sleep(rng.random() / 5000)

    async def take(how_many: int) -> list[int]:
        loop = asyncio.get_running_loop()
        mailbox.bind(loop)
        taken: list[int] = []
        while len(taken) < how_many:
            found, message = mailbox.pop()
            if found:
                assert message is not None
                taken.append(message)
                continue
            waiter[:] = [loop.create_future()]
            await asyncio.wait_for(waiter[0], 10)
        return taken

    producer = threading.Thread(target=produce)
    producer.start()
    got: list[int] = []
    while len(got) < count:  # each asyncio.run is a new loop; the last one closed
        got += asyncio.run(take(min(count - len(got), rng.randint(1, 40))))
    producer.join(10)
    assert got == list(range(count)), f"seed {seed}"
    assert len(mailbox) == 0


def test_closed_refuses_new_messages_and_keeps_what_it_has() -> None:
    mailbox: Mailbox[int] = Mailbox(lambda: None, run)
    assert mailbox.put([1, 2])
    assert mailbox.close()
    assert not mailbox.close()
    assert not mailbox.put([3])
    assert [mailbox.pop(), mailbox.pop(), mailbox.pop()] == [(True, 1), (True, 2), (False, None)]


def test_a_consumer_that_delivers_on_its_own_loop_is_not_reentered() -> None:
    got: list[int] = []
    depth = [0, 0]

    def handler(message: int) -> None:
        depth[0] += 1
        depth[1] = max(depth[1], depth[0])
        got.append(message)
        if message < 5:
            deliver(mailbox, [message + 10])  # arrives behind what is already queued
        depth[0] -= 1

    async def main() -> None:
        mailbox.bind(asyncio.get_running_loop())
        deliver(mailbox, [0, 1, 2])
        await asyncio.sleep(0)

    mailbox: Mailbox[int] = Mailbox(lambda: handler, run)
    asyncio.run(main())
    assert got == [0, 1, 2, 10, 11, 12]
    assert depth[1] == 1


def test_callbacks_set_inside_a_finished_loop_move_home(
    loops: tuple[LoopThread, LoopThread],
) -> None:
    home, dispatch_loop = loops
    got: list[int] = []
    arrived = threading.Event()

    def handler(message: int) -> None:
        got.append(message)
        if len(got) == 3:
            arrived.set()

    mailbox: Mailbox[int] = Mailbox(lambda: handler, run, home=lambda: home.loop)

    async def bind_here() -> None:
        mailbox.bind(asyncio.get_running_loop())
        deliver(mailbox, [0])
        await asyncio.sleep(0)

    asyncio.run(bind_here())  # that loop is closed now
    dispatch_loop.loop.call_soon_threadsafe(deliver, mailbox, [1, 2])
    assert arrived.wait(10)
    assert got == [0, 1, 2]
    assert mailbox.loop is home.loop
