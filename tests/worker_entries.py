"""What the worker tests build in workers and run in calling isolates (imported there by
reference)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import ray

from rayisolates import IsolateWorker, ReceivePort, SendPort


class Recorder:
    """A worker object of every method kind, writing down each call as it starts."""

    greeting = "hello"

    def __init__(self, start: int = 0, *, step: int = 1) -> None:
        self.total = start
        self.step = step
        self.started: list[Any] = []
        self.finalized = 0
        self.produced = 0  # items count() has yielded

    @property
    def doubled(self) -> int:
        return 2 * self.total

    def add(self, amount: int | None = None, *, times: int = 1) -> int:
        self.started.append("add")
        self.total += (self.step if amount is None else amount) * times
        return self.total

    async def add_later(self, amount: int) -> int:
        self.started.append("add_later")
        await asyncio.sleep(0)
        self.total += amount
        return self.total

    def record(self, tag: Any) -> list[Any]:
        self.started.append(tag)
        return list(self.started)

    async def gate(self, reply: SendPort[Any]) -> list[Any]:
        """Wait until told, on a port of our own; the calls started meanwhile."""
        self.started.append("gate")
        port: ReceivePort[Any] = ReceivePort("gate")
        with port:
            reply.send(port.send_port)
            await anext(port)
        return list(self.started)

    def count(self, limit: int | None = None) -> Iterator[int]:
        try:
            i = 0
            while limit is None or i < limit:
                self.produced += 1
                yield i
                i += 1
        finally:
            self.finalized += 1

    async def count_async(self, limit: int) -> AsyncIterator[int]:
        for i in range(limit):
            await asyncio.sleep(0)
            yield i * 10

    def fail(self, message: str) -> None:
        raise ValueError(message)

    async def fail_later(self) -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    def fail_in_stream(self) -> Iterator[int]:
        yield 1
        raise LookupError("mid-stream")

    def lock(self) -> Any:
        import threading

        return threading.Lock()

    def close(self) -> str:
        """Shares its name with the handle's own ``close``."""
        return "the object's close"

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        return str(ray.get_runtime_context().get_node_id())


class Broken:
    def __init__(self) -> None:
        raise ValueError("cannot build")


class Steps:
    """For the random sweep: sync and async steps of several callers, logged as they start."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []

    def sync_step(self, caller: str, i: int) -> tuple[str, int]:
        self.log.append((caller, i))
        return (caller, i * i)

    async def async_step(self, caller: str, i: int, pauses: int) -> tuple[str, int]:
        self.log.append((caller, i))
        for _ in range(pauses):
            await asyncio.sleep(0)
        return (caller, i * i)


def plan(caller: str, seed: int, count: int) -> list[tuple[str, int, int]]:
    """The calls one caller makes: (method, i, pauses)."""
    rng = random.Random(f"{seed}-{caller}")
    return [(rng.choice(["sync_step", "async_step"]), i, rng.randrange(4)) for i in range(count)]


async def make_calls(worker: IsolateWorker, caller: str, seed: int, count: int) -> list[Any]:
    """Make a caller's planned calls all at once, then gather their answers."""
    futures = []
    for method, i, pauses in plan(caller, seed, count):
        if method == "sync_step":
            futures.append(worker.sync_step(caller, i))
        else:
            futures.append(worker.async_step(caller, i, pauses))
    return [tuple(answer) for answer in await asyncio.gather(*futures)]


async def calling_isolate(job: tuple[SendPort[Any], IsolateWorker, str, int, int]) -> None:
    """An isolate making the calls of :func:`make_calls` through a worker handle it got
    in a message; it sends back the answers."""
    reply, worker, caller, seed, count = job
    reply.send(await make_calls(worker, caller, seed, count))


async def remote_user(job: tuple[SendPort[Any], IsolateWorker]) -> None:
    """An isolate (on another node) using a worker handle it received: a call, an async
    call, a stream, an error; where it ran."""
    reply, worker = job
    total = await worker.add(5)
    later = await worker.add_later(1)
    items = [item async for item in worker.count_async(3)]
    try:
        await worker.fail("from afar")
    except ValueError as error:
        failed = str(error)
    reply.send(
        {
            "total": total,
            "later": later,
            "items": items,
            "failed": failed,
            "worker_node": await worker.node(),
            "here": str(ray.get_runtime_context().get_node_id()),
        }
    )
