"""Benchmarks of streams (on a warm pool member): small items per second, and stopping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray

from rayisolates import IsolatePool

from . import entries
from .between import queue_throughput
from .figure import OURS, Figure

__all__ = ["stream_stop", "stream_throughput"]


@contextmanager
def stream_throughput(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """Small items from a generator in another, warm process, taken one by one: a pool
    member's stream (buffer 1024) against a Ray streaming generator task (unbounded, as
    Ray runs it by default) and a multiprocessing.Queue (unbounded) fed by a process."""
    count = 5_000 if quick else 100_000
    ray_count = 500 if quick else 5_000
    ray_stream = ray.remote(num_returns="streaming", max_retries=0)(entries.ray_numbers)
    pool = IsolatePool(1, debug_name="bench-stream")

    def ours() -> float:
        started = time.perf_counter()
        taken = sum(1 for _ in pool.stream(entries.numbers, count, buffer=1024))
        assert taken == count
        return count / (time.perf_counter() - started)

    def ray_generator() -> float:
        started = time.perf_counter()
        taken = sum(1 for ref in ray_stream.remote(ray_count) if ray.get(ref) is not None)
        assert taken == ray_count
        return ray_count / (time.perf_counter() - started)

    mp_queue, stop_queue = queue_throughput(count)

    ours()
    ray_generator()
    mp_queue()
    try:
        yield Figure(
            "IsolatePool.stream small items, one by one, buffer 1024",
            "items/s",
            higher_is_better=True,
            contenders={
                OURS: ours,
                "Ray streaming generator task": ray_generator,
                "multiprocessing.Queue": mp_queue,
            },
            rounds=3 if quick else 7,
        )
    finally:
        stop_queue()
        pool.close()


@contextmanager
def stream_stop(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """From stopping an endless stream on a warm pool member to its producer stopped (the
    stream's ``close()`` returns once the producer has finished), against cancelling a
    Ray streaming generator task (``ray.cancel``, until reading it fails), both holding
    16 items."""
    # Without Ray's private backpressure option the task would run ahead without end,
    # and reading past what it made before the cancel would never finish.
    ray_endless = ray.remote(
        num_returns="streaming", max_retries=0, _generator_backpressure_num_objects=16
    )(entries.endless)

    pool = IsolatePool(1, debug_name="bench-stream-stop")

    def ours() -> float:
        stream: Any = pool.stream(entries.endless, buffer=16)
        next(stream)
        started = time.perf_counter()
        stream.close()
        return (time.perf_counter() - started) * 1000

    def ray_cancel() -> float:
        generator = ray_endless.remote()
        ray.get(next(generator))
        started = time.perf_counter()
        ray.cancel(generator)
        try:
            for ref in generator:
                ray.get(ref)
        except (ray.exceptions.TaskCancelledError, ray.exceptions.RayTaskError):
            pass
        return (time.perf_counter() - started) * 1000

    ours()
    try:
        yield Figure(
            "stop a streaming producer",
            "ms",
            higher_is_better=False,
            contenders={OURS: ours, "ray.cancel of a streaming generator task": ray_cancel},
            rounds=3 if quick else 10,
        )
    finally:
        pool.close()
