"""What benchmarks run inside isolates and raw Ray actors (imported by Ray workers)."""

from __future__ import annotations

import os
from typing import Any

import ray

from ._isolate import Isolate
from ._ports import ReceivePort, SendPort


async def echo(reply: SendPort[Any]) -> None:
    """Send our port, then send every message back."""
    port: ReceivePort[Any] = ReceivePort("bench-echo")
    reply.send(port.send_port)
    async for message in port:
        reply.send(message)


async def sender(reply: SendPort[Any]) -> None:
    """Send our port and pid; for each ``(target, count)`` received, send ``count`` ints."""
    port: ReceivePort[Any] = ReceivePort("bench-sender")
    reply.send((port.send_port, os.getpid()))
    async for target, count in port:
        for i in range(count):
            target.send(i)


def exit_with(job: tuple[SendPort[Any], Any]) -> None:
    """Hand ``value`` back with ``Isolate.exit``."""
    reply, value = job
    Isolate.exit(reply, value)


@ray.remote(num_cpus=0)
class RawEcho:
    """The raw-Ray comparator for ping-pong: one async actor method."""

    async def echo(self, value: Any) -> Any:
        return value

    def pid(self) -> int:
        return os.getpid()


@ray.remote(num_cpus=0)
class RawSink:
    """Receives one actor call per message."""

    def __init__(self) -> None:
        self.count = 0

    async def put(self, value: Any) -> None:
        self.count += 1

    async def received(self) -> int:
        return self.count


@ray.remote(num_cpus=0)
class RawProducer:
    """Sends ``count`` messages as one actor call each, or through a ray.util.queue."""

    async def to_sink(self, sink: Any, count: int) -> None:
        calls = [sink.put.remote(i) for i in range(count)]
        for call in calls:
            await call

    def to_queue(self, queue: Any, count: int) -> None:
        for i in range(count):
            queue.put(i)


@ray.remote(num_cpus=0)
class RawWaiter:
    """Keeps a call pending forever: the raw way to learn that an actor died."""

    def pid(self) -> int:
        return os.getpid()

    async def wait_forever(self) -> None:
        import asyncio

        await asyncio.Event().wait()


def mp_producer(commands: Any, data: Any) -> None:
    """A multiprocessing.Queue producer: for each count received, put that many ints."""
    while True:
        count = commands.get()
        if count is None:
            return
        for i in range(count):
            data.put(i)
