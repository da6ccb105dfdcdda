"""Benchmarks of running and spawning: Isolate.run, Isolate.spawn, an idle isolate's memory."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray

from rayisolates import Isolate, ReceivePort
from rayisolates._context.context import current
from rayisolates._runtime.main import MainRuntime

from . import entries
from .figure import OURS, Figure, actor, milliseconds

__all__ = [
    "idle_memory",
    "run_round_trip",
    "run_throughput",
    "spawn_first_message",
    "spawn_from_pool",
]


def _noop() -> None:
    return None


@contextmanager
def _process_pool() -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 2)
    try:
        for future in [pool.submit(_noop) for _ in range(8)]:  # workers started
            future.result()
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)


@contextmanager
def run_round_trip(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """``Isolate.run`` of a no-op, against a raw Ray task and ProcessPoolExecutor."""
    raw_noop = ray.remote(max_retries=0)(_noop)
    with _process_pool() as pool:

        def ours() -> float:
            return milliseconds(lambda: Isolate.run(_noop).result())

        def raw() -> float:
            return milliseconds(lambda: ray.get(raw_noop.remote()))

        def process_pool() -> float:
            return milliseconds(lambda: pool.submit(_noop).result())

        for _ in range(5):  # workers started, functions exported
            ours()
            raw()
        yield Figure(
            "Isolate.run no-op round trip",
            "ms",
            higher_is_better=False,
            contenders={
                OURS: ours,
                "raw @ray.remote task": raw,
                "ProcessPoolExecutor": process_pool,
            },
            rounds=30 if quick else 300,
        )


@contextmanager
def run_throughput(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """Concurrent no-op runs (1,000; 200 with ``--quick``), against raw tasks and a process pool."""
    count = 200 if quick else 1000
    raw_noop = ray.remote(max_retries=0)(_noop)
    with _process_pool() as pool:

        def ours() -> float:
            started = time.perf_counter()
            for future in [Isolate.run(_noop) for _ in range(count)]:
                future.result()
            return count / (time.perf_counter() - started)

        def raw() -> float:
            started = time.perf_counter()
            ray.get([raw_noop.remote() for _ in range(count)])
            return count / (time.perf_counter() - started)

        def process_pool() -> float:
            started = time.perf_counter()
            for future in [pool.submit(_noop) for _ in range(count)]:
                future.result()
            return count / (time.perf_counter() - started)

        ours()
        raw()
        yield Figure(
            f"Isolate.run throughput, {count} concurrent",
            "runs/s",
            higher_is_better=True,
            contenders={
                OURS: ours,
                "raw @ray.remote task": raw,
                "ProcessPoolExecutor": process_pool,
            },
            rounds=3 if quick else 10,
        )


def _raw_actor_first_call() -> float:
    started = time.perf_counter()
    created = actor(entries.RawIdle).remote()
    ray.get(created.hello.remote())
    elapsed = (time.perf_counter() - started) * 1000
    ray.kill(created)
    return elapsed


_SETTLE_SECONDS = 0.3


def _pool_refilled(timeout: float = 60.0) -> None:
    """Wait (untimed) until ``init``'s isolate pool is full again and the driver holds its
    leases: the spawn rows measure a spawn from a warm pool, as a user who spawns now and
    then sees it, not one that competes with the refill of the spawn before it (starting a
    Ray worker process takes about a second of CPU here)."""
    context = current()
    assert isinstance(context.runtime, MainRuntime), "the bench runs in the driver"
    leases = context.runtime.leases
    supervisor = context.sender.supervisor()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pool = ray.get(supervisor.warm_pool.remote())
        full = pool["waiting"] + pool["leased"] >= pool["size"] and not pool["starting"]
        if full and leases.held >= leases.size:
            time.sleep(_SETTLE_SECONDS)  # the ended isolates' processes exit meanwhile
            return
        time.sleep(0.05)
    raise TimeoutError(f"the isolate pool did not refill in {timeout:.0f} s")


def _spawn_case(loop: asyncio.AbstractEventLoop, quick: bool, pooled: bool) -> Iterator[Figure]:
    port: ReceivePort[Any] = ReceivePort("bench-spawn")
    # Ray options bypass the isolate pool: num_cpus=0 (the default anyway) asks for a fresh actor.
    options: dict[str, Any] = {} if pooled else {"num_cpus": 0}

    async def spawn_and_hear() -> None:
        await Isolate.spawn(entries.hello, port.send_port, **options)
        await anext(port)

    def ours() -> float:
        if pooled:
            _pool_refilled()
        return milliseconds(lambda: loop.run_until_complete(spawn_and_hear()))

    def raw() -> float:
        if pooled:  # on a machine as quiet as ours had
            _pool_refilled()
        return _raw_actor_first_call()

    try:
        yield Figure(
            f"spawn to first message{', isolate pool' if pooled else ''}",
            "ms",
            higher_is_better=False,
            contenders={OURS: ours, "raw actor creation + first call": raw},
            rounds=3 if quick else 12,
        )
    finally:
        port.close()


@contextmanager
def spawn_first_message(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """Isolate.spawn to the first message from it, against a raw actor and its first call."""
    yield from _spawn_case(loop, quick, pooled=False)


@contextmanager
def spawn_from_pool(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """The same with a started host taken from ``init(isolate_pool=...)``."""
    yield from _spawn_case(loop, quick, pooled=True)


@contextmanager
def idle_memory(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """Resident memory of an idle isolate, against an idle raw actor."""
    port: ReceivePort[Any] = ReceivePort("bench-memory")
    Isolate.spawn(entries.idle, port.send_port, num_cpus=0).result()
    isolate = loop.run_until_complete(anext(port))
    raw = actor(entries.RawIdle).remote()

    def ours() -> float:
        isolate.send("rss?")
        return float(loop.run_until_complete(anext(port)))

    def raw_actor() -> float:
        return float(ray.get(raw.resident_megabytes.remote()))

    try:
        yield Figure(
            "idle isolate resident memory",
            "MB",
            higher_is_better=False,
            contenders={OURS: ours, "idle raw actor": raw_actor},
            rounds=3,
        )
    finally:
        isolate.send(None)
        port.close()
        ray.kill(raw)
