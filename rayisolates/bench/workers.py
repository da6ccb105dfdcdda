"""Benchmarks of ``IsolateWorker``: a call's round trip, many calls at once, idle memory.

The comparator is what a Ray user writes for an object in another process:
a raw sync actor (faster than an async one here), called with ``.remote()``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray

from rayisolates import Isolate, IsolateWorker, ReceivePort

from . import entries
from .figure import OURS, Figure, actor, median_round_trip_ms

__all__ = ["round_trip", "worker_idle_memory", "worker_round_trip", "worker_throughput"]


@contextmanager
def _contenders(**placement: Any) -> Iterator[tuple[IsolateWorker, Any]]:
    """A warm worker and a warm raw sync actor, each with a no-op method (both placed by
    ``placement``, Ray actor options)."""
    worker = IsolateWorker.spawn(
        entries.NoopWorker, debug_name="bench-worker", **placement
    ).result()
    raw = actor(entries.RawNoop).options(**placement).remote()
    try:
        for _ in range(20):
            worker.noop().result()
            ray.get(raw.noop.remote())
        yield worker, raw
    finally:
        worker.close()
        ray.kill(raw)


@contextmanager
def worker_round_trip(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """One no-op method call at a time, waited for with ``.result()``, against
    ``ray.get`` of one raw sync actor method call; both on the driver's node."""
    yield from round_trip(quick, "IsolateWorker no-op call round trip", {})


def round_trip(quick: bool, name: str, placement: dict[str, Any]) -> Iterator[Figure]:
    """The round-trip figure, worker and raw actor placed by ``placement``."""
    batch = 20
    with _contenders(**placement) as (worker, raw):
        yield Figure(
            name,
            "ms",
            higher_is_better=False,
            contenders={
                OURS: lambda: median_round_trip_ms(lambda i: worker.noop(i).result(), batch),
                "raw sync actor method call": lambda: median_round_trip_ms(
                    lambda i: ray.get(raw.noop.remote(i)), batch
                ),
            },
            rounds=10 if quick else 60,
        )


@contextmanager
def worker_throughput(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """No-op method calls (10,000; 1,000 with ``--quick``) all made at once, then waited
    for, against the same calls on a raw sync actor (``.remote()`` all, then ``ray.get``)."""
    count = 1_000 if quick else 10_000
    with _contenders() as (worker, raw):

        def rate(calls: Any) -> float:
            started = time.perf_counter()
            calls()
            return count / (time.perf_counter() - started)

        def ours() -> float:
            return rate(
                lambda: [future.result() for future in [worker.noop() for _ in range(count)]]
            )

        def raw_calls() -> float:
            return rate(lambda: ray.get([raw.noop.remote() for _ in range(count)]))

        yield Figure(
            f"IsolateWorker throughput, {count:,} no-op calls at once",
            "calls/s",
            higher_is_better=True,
            contenders={OURS: ours, "raw sync actor method calls": raw_calls},
            rounds=3 if quick else 7,
        )


@contextmanager
def worker_idle_memory(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """Resident memory of an idle worker's isolate, against an idle isolate's."""
    port: ReceivePort[Any] = ReceivePort("bench-worker-memory")
    Isolate.spawn(entries.idle, port.send_port, num_cpus=0).result()
    isolate = loop.run_until_complete(anext(port))
    worker = IsolateWorker.spawn(entries.NoopWorker, debug_name="bench-idle-worker").result()

    def idle_isolate() -> float:
        isolate.send("rss?")
        return float(loop.run_until_complete(anext(port)))

    try:
        yield Figure(
            "idle worker resident memory",
            "MB",
            higher_is_better=False,
            contenders={
                OURS: lambda: float(worker.resident_megabytes().result()),
                "idle isolate": idle_isolate,
            },
            rounds=3,
        )
    finally:
        worker.close()
        isolate.send(None)
        port.close()
