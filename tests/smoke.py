"""A few seconds of the library at work on whatever Ray is installed: the check that the
lowest supported Ray version still runs it (``make test-min-ray``).

Run from the repository root (``python -m tests.smoke``); it starts a local Ray,
exercises one of each kind of isolate and exits 0, or raises at the first thing
that does not work. The unit tests, which need no Ray, run beside it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import ray

import rayisolates
from rayisolates import Isolate, IsolatePool, IsolateWorker, ReceivePort, SendPort

TIMEOUT = 60.0


async def echo_doubled(reply: SendPort[object]) -> None:
    """A spawned isolate: hands back a port of its own, doubles one number sent there."""
    async with ReceivePort[int]() as inbox:
        reply.send(inbox.send_port)
        reply.send(2 * await anext(inbox))


def square(number: int) -> int:
    return number * number


class Counter:
    """Lives in a worker isolate."""

    def __init__(self, start: int) -> None:
        self.count = start

    async def add(self, amount: int) -> int:
        self.count += amount
        return self.count

    async def upto(self, end: int) -> AsyncIterator[int]:
        for number in range(end):
            yield number


async def spawn_and_talk() -> int:
    async with ReceivePort[object]() as replies:
        await Isolate.spawn(echo_doubled, replies.send_port)
        inbox = await anext(replies)
        assert isinstance(inbox, SendPort), inbox
        inbox.send(21)
        doubled = await anext(replies)
    assert isinstance(doubled, int), doubled
    return doubled


async def call_a_worker() -> tuple[int, list[int]]:
    async with await IsolateWorker.spawn(Counter, 40) as worker:
        total: int = await worker.add(2)
        numbers = [number async for number in worker.upto(3)]
    return total, numbers


def main() -> int:
    # A Ray of its own ("local"): never one that ray.init would find already
    # running on this machine, which may be another program's (and another version).
    rayisolates.init(address="local", num_cpus=2, object_store_memory=200 * 1024 * 1024)
    try:
        print(f"Ray {ray.__version__}, rayisolates {rayisolates.__version__}")
        assert Isolate.run(pow, 2, 10).result(timeout=TIMEOUT) == 1024
        print("Isolate.run: 2 ** 10 = 1024")
        assert asyncio.run(asyncio.wait_for(spawn_and_talk(), TIMEOUT)) == 42
        print("Isolate.spawn and a port round trip: 21 doubled is 42")
        with IsolatePool(2) as pool:
            assert list(pool.map(square, range(5))) == [0, 1, 4, 9, 16]
        print("IsolatePool.map: squares of 0..4")
        assert asyncio.run(asyncio.wait_for(call_a_worker(), TIMEOUT)) == (42, [0, 1, 2])
        print("IsolateWorker: a call and a stream")
    finally:
        rayisolates.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
