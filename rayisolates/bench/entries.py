"""What benchmarks run inside isolates and raw Ray actors (imported by Ray workers)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import ray

from rayisolates import Isolate, ReceivePort, SendPort

from .figure import median_round_trip_ms, median_round_trip_ms_async


async def echo(reply: SendPort[Any]) -> None:
    """Send our port, then send every message back."""
    port: ReceivePort[Any] = ReceivePort("bench-echo")
    reply.send(port.send_port)
    async for message in port:
        reply.send(message)


async def reply_echo(reply: SendPort[Any]) -> None:
    """Send our port, then answer each ``(value, answer)`` with ``value`` on ``answer``.

    Dart's request/reply idiom: the reply port travels in each message.
    """
    port: ReceivePort[Any] = ReceivePort("bench-reply-echo")
    reply.send(port.send_port)
    async for value, answer in port:
        answer.send(value)


async def sender(reply: SendPort[Any]) -> None:
    """Send our port and pid; for each ``(target, count)`` received, send ``count`` ints."""
    port: ReceivePort[Any] = ReceivePort("bench-sender")
    reply.send((port.send_port, os.getpid()))
    async for target, count in port:
        for i in range(count):
            target.send(i)


@ray.remote(num_cpus=0)
class RawEcho:
    """The raw-Ray comparator for ping-pong: one sync actor method (Ray's fastest call)."""

    def echo(self, value: Any) -> Any:
        return value


@ray.remote(num_cpus=0)
class RawAsyncEcho:
    """The same as an ``async def`` method, as an async actor (like an isolate) has."""

    async def echo(self, value: Any) -> Any:
        return value


@ray.remote(num_cpus=0)
class RawSink:
    """Receives one sync actor call per message."""

    def __init__(self) -> None:
        self.count = 0

    def put(self, value: Any) -> None:
        self.count += 1

    def received(self) -> int:
        return self.count


@ray.remote(num_cpus=0)
class RawProducer:
    """Sends ``count`` messages as one actor call each, or through a ray.util.queue."""

    def to_sink(self, sink: Any, count: int) -> None:
        ray.get([sink.put.remote(i) for i in range(count)])

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


def resident_megabytes() -> float:
    """This process's resident memory (Linux /proc), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def hello(reply: SendPort[Any]) -> None:
    """Send one message and end: spawn-to-first-message."""
    reply.send("hello")


async def idle(reply: SendPort[Any]) -> None:
    """Wait idle; answer each request with our resident memory; ``None`` ends."""
    port: ReceivePort[Any] = ReceivePort("bench-idle")
    reply.send(port.send_port)
    async for request in port:
        if request is None:
            break
        reply.send(resident_megabytes())
    port.close()


@ray.remote(num_cpus=0)
class RawIdle:
    """An idle raw actor: first call and resident memory."""

    def hello(self) -> str:
        return "hello"

    def resident_megabytes(self) -> float:
        return resident_megabytes()


def total(array: Any) -> float:
    """Sum an array (the work done on large data)."""
    return float(array.sum())


def nbytes(array: Any) -> int:
    """Acknowledge an array without touching its data."""
    return int(array.nbytes)


_prepared: Any = None


def prepare(count: int) -> None:
    """ProcessPoolExecutor initializer: an array to hand back later."""
    global _prepared
    _prepared = np.ones(count, dtype=np.int64)


def give() -> Any:
    """Hand back the array ``prepare`` made."""
    return _prepared


async def exit_when_told(job: tuple[SendPort[Any], int]) -> None:
    """Make an array, send our port, and on any message exit with the array."""
    reply, count = job
    array = np.ones(count, dtype=np.int64)
    port: ReceivePort[Any] = ReceivePort("bench-exit")
    reply.send(port.send_port)
    await anext(port)
    Isolate.exit(reply, array)


async def acknowledge_arrays(reply: SendPort[Any]) -> None:
    """Send our port; answer each array received with its size in bytes.

    Each array is let go before answering, as the raw comparator's actor
    method lets go of its argument when it returns.
    """
    port: ReceivePort[Any] = ReceivePort("bench-arrays")
    reply.send(port.send_port)
    while (array := await anext(port)) is not None:
        size = int(array.nbytes)
        del array
        reply.send(size)
    port.close()


@ray.remote(num_cpus=0)
class RawArrays:
    """The raw-Ray comparator for large data: an actor holding or taking arrays."""

    def prepare(self, count: int) -> None:
        self.array = np.ones(count, dtype=np.int64)

    def give(self) -> Any:
        return self.array

    def take(self, array: Any) -> int:
        return int(array.nbytes)


async def pinger(reply: SendPort[Any]) -> None:
    """Ping-pong with a partner isolate (an ``echo`` answering to our second port).

    Sends ``(commands, echoes)``; the partner's port arrives on ``echoes``
    first. For each ``count`` on ``commands``: ``count`` round trips, then
    their median in ms to ``reply``.
    """
    await _ping(reply, lambda i, echoes: i)


async def reply_pinger(reply: SendPort[Any]) -> None:
    """:func:`pinger` with our reply port in each message, for a ``reply_echo`` partner."""
    await _ping(reply, lambda i, echoes: (i, echoes))


async def _ping(reply: SendPort[Any], request: Callable[[int, SendPort[Any]], Any]) -> None:
    commands: ReceivePort[int] = ReceivePort("bench-pinger")
    echoes: ReceivePort[Any] = ReceivePort("bench-pinger-echoes")
    reply.send((commands.send_port, echoes.send_port))
    partner: SendPort[Any] = await anext(echoes)

    async def round_trip(i: int) -> object:
        partner.send(request(i, echoes.send_port))
        return await anext(echoes)

    async for count in commands:
        reply.send(await median_round_trip_ms_async(round_trip, count))


async def burst_to(reply: SendPort[Any]) -> None:
    """Send our port; for each ``(target, count)``: ``count`` ints to ``target``, then ``None``."""
    port: ReceivePort[Any] = ReceivePort("bench-burst")
    reply.send(port.send_port)
    async for target, count in port:
        for i in range(count):
            target.send(i)
        target.send(None)


async def counting_sink(reply: SendPort[Any]) -> None:
    """Send our port; count what arrives, and at each ``None`` send the count to ``reply``."""
    port: ReceivePort[Any] = ReceivePort("bench-counting-sink")
    reply.send(port.send_port)
    count = 0
    async for message in port:
        if message is None:
            reply.send(count)
            count = 0
        else:
            count += 1


@ray.remote(num_cpus=0)
class RawPinger:
    """The raw-Ray comparator between two actors: sync calls from one actor to another."""

    def ping(self, target: Any, count: int) -> float:
        return median_round_trip_ms(lambda i: ray.get(target.echo.remote(i)), count)


def noop() -> None:
    """The task of the throughput and round-trip figures."""
    return None


def pid_then_block(reply: SendPort[Any]) -> None:
    """A pool task: say which process runs it, then block until killed."""
    import time

    reply.send(os.getpid())
    time.sleep(3600)


@ray.remote(num_cpus=0)
class RawNoop:
    """A sync actor for ``ray.util.ActorPool``, and one Ray restarts after a kill."""

    def noop(self, value: Any = None) -> None:
        return None

    def pid(self) -> int:
        return os.getpid()


def numbers(count: int) -> Any:
    """A generator of ``count`` small ints: the stream benchmark's producer."""
    yield from range(count)


def endless() -> Any:
    """Small ints for ever (until the consumer stops it)."""
    i = 0
    while True:
        yield i
        i += 1


def ray_numbers(count: int) -> Any:
    """The same as a Ray streaming generator task (which cannot ``yield from`` a range)."""
    for i in range(count):  # noqa: UP028 - Ray's generator wrapper calls .send on it
        yield i


class NoopWorker:
    """The object of the worker figures: a no-op method, and its process's memory."""

    def noop(self, value: Any = None) -> None:
        return None

    def resident_megabytes(self) -> float:
        return resident_megabytes()
