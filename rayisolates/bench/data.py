"""Benchmarks of large data: a run over an array, Isolate.exit of one, one sent through a port.

Each is measured against raw Ray doing the same, ProcessPoolExecutor (which
pickles the data through a pipe), and one ``memcpy`` of the same bytes in
this process: the physical floor of handing data from one process's memory
to shared memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import ray

from rayisolates import Isolate, ReceivePort, SendPort

from . import entries
from .figure import OURS, Figure, actor

__all__ = ["exit_large_array", "port_large_array", "run_over_large_array"]

GB = 1024**3
MB = 1024**2


def _seconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _memcpy(source: np.ndarray) -> Callable[[], float]:
    target = np.empty_like(source)
    np.copyto(target, source)  # pages touched once before timing

    def copy() -> float:
        return _seconds(lambda: np.copyto(target, source))

    return copy


def _label(size: int) -> str:
    return f"{size / GB:.0f} GB" if size >= GB else f"{size // MB} MB"


@contextmanager
def run_over_large_array(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """``Isolate.run`` summing an array held by the caller."""
    size = 32 * MB if quick else GB
    array = np.ones(size // 8, dtype=np.int64)
    raw_total = ray.remote(max_retries=0)(entries.total)
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        pool.submit(entries.total, array[:8]).result()
        yield Figure(
            f"Isolate.run over a {_label(size)} array",
            "s",
            higher_is_better=False,
            contenders={
                OURS: lambda: _seconds(lambda: Isolate.run(entries.total, array).result()),
                "raw @ray.remote task": lambda: _seconds(lambda: ray.get(raw_total.remote(array))),
                "ProcessPoolExecutor": lambda: _seconds(
                    lambda: pool.submit(entries.total, array).result()
                ),
                "one memcpy": _memcpy(array),
            },
            rounds=2 if quick else 3,
        )


@contextmanager
def exit_large_array(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """From asking an isolate to exit with an array it holds, to the array in hand."""
    size = 32 * MB if quick else GB
    count = size // 8
    port: ReceivePort[Any] = ReceivePort("bench-exit")

    def raw() -> float:
        # A fresh actor each time, as an exiting isolate is a fresh process each time:
        # a process's first write to the object store maps its pages (about 0.1 s per GB).
        holder = actor(entries.RawArrays).remote()
        ray.get(holder.prepare.remote(count))
        started = time.perf_counter()
        ray.get(holder.give.remote())
        elapsed = time.perf_counter() - started
        ray.kill(holder)
        return elapsed

    def ours() -> float:
        Isolate.spawn(entries.exit_when_told, (port.send_port, count), num_cpus=0).result()
        go: SendPort[Any] = loop.run_until_complete(anext(port))
        started = time.perf_counter()
        go.send("go")
        array = loop.run_until_complete(anext(port))
        elapsed = time.perf_counter() - started
        assert array.nbytes == size
        return elapsed

    with concurrent.futures.ProcessPoolExecutor(
        max_workers=1, initializer=entries.prepare, initargs=(count,)
    ) as pool:
        pool.submit(entries.nbytes, np.ones(1)).result()
        try:
            yield Figure(
                f"Isolate.exit of a {_label(size)} array",
                "s",
                higher_is_better=False,
                contenders={
                    OURS: ours,
                    "raw actor method returning it": raw,
                    "ProcessPoolExecutor": lambda: _seconds(
                        lambda: pool.submit(entries.give).result()
                    ),
                    "one memcpy": _memcpy(np.ones(count, dtype=np.int64)),
                },
                rounds=2 if quick else 3,
            )
        finally:
            port.close()


@contextmanager
def port_large_array(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """An array sent through a port to an isolate, until it acknowledges receipt."""
    size = 16 * MB if quick else 200 * MB
    array = np.ones(size // 8, dtype=np.int64)
    port: ReceivePort[Any] = ReceivePort("bench-port-array")
    Isolate.spawn(entries.acknowledge_arrays, port.send_port, num_cpus=0).result()
    worker: SendPort[Any] = loop.run_until_complete(anext(port))
    raw = actor(entries.RawArrays).remote()

    def ours() -> float:
        started = time.perf_counter()
        worker.send(array)
        loop.run_until_complete(anext(port))
        return time.perf_counter() - started

    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        pool.submit(entries.nbytes, array[:8]).result()
        ours()
        try:
            yield Figure(
                f"a {_label(size)} array through a port",
                "s",
                higher_is_better=False,
                contenders={
                    OURS: ours,
                    "raw actor call taking it": lambda: _seconds(
                        lambda: ray.get(raw.take.remote(array))
                    ),
                    "ProcessPoolExecutor": lambda: _seconds(
                        lambda: pool.submit(entries.nbytes, array).result()
                    ),
                    "one memcpy": _memcpy(array),
                },
                rounds=3 if quick else 5,
            )
        finally:
            worker.send(None)
            port.close()
            ray.kill(raw)
