"""Benchmarks of ``IsolatePool``: throughput, round trip, and a killed member's replacement."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray.util import ActorPool

from rayisolates import IsolatePool, ReceivePort

from . import entries
from .figure import OURS, Figure, actor, milliseconds

__all__ = ["pool_replacement", "pool_round_trip", "pool_throughput", "pool_throughput_script"]

MEMBERS = 4


@contextmanager
def _contenders() -> Iterator[tuple[IsolatePool, concurrent.futures.ProcessPoolExecutor, Any]]:
    """An IsolatePool, a ProcessPoolExecutor and a ray.util.ActorPool, 4 workers each, warm."""
    pool = IsolatePool(MEMBERS, debug_name="bench-pool")
    processes = concurrent.futures.ProcessPoolExecutor(max_workers=MEMBERS)
    actors = [actor(entries.RawNoop).remote() for _ in range(MEMBERS)]
    try:
        for warming in [pool.run(entries.noop) for _ in range(4 * MEMBERS)]:
            warming.result()
        for started in [processes.submit(entries.noop) for _ in range(4 * MEMBERS)]:
            started.result()
        ray.get([each.noop.remote() for each in actors])
        yield pool, processes, ActorPool(actors)
    finally:
        pool.close()
        processes.shutdown(cancel_futures=True)
        for each in actors:
            ray.kill(each)


def script_noop(*args: Any) -> None:
    """A no-op as a user's script defines it: its module is ``__main__``, so it is
    pickled by value (``ProcessPoolExecutor`` pickles it by name and its workers
    import the script; Ray by value, once per remote function)."""


script_noop.__module__ = "__main__"
script_noop.__qualname__ = script_noop.__name__ = "script_noop"


@contextmanager
def pool_throughput(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """No-op tasks through 4 members (10,000; 500 with ``--quick``), against a
    ProcessPoolExecutor(4), raw Ray tasks and ray.util.ActorPool over 4 sync actors;
    the function from a module."""
    yield from _throughput(quick, entries.noop, "")


@contextmanager
def pool_throughput_script(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """The same with a function defined in the calling script (``__main__``).
    ``ProcessPoolExecutor`` gets the module's one: its workers could not import
    a script's function from this command."""
    yield from _throughput(quick, script_noop, ", function defined in __main__")


def _throughput(quick: bool, function: Any, which: str) -> Iterator[Figure]:
    count = 500 if quick else 10_000
    raw_noop = ray.remote(max_retries=0)(function)
    ray.get([raw_noop.remote() for _ in range(8)])
    with _contenders() as (pool, processes, actor_pool):

        def rate(submit_all: Any) -> float:
            started = time.perf_counter()
            submit_all()
            return count / (time.perf_counter() - started)

        def all_of(submit: Any) -> Any:
            return lambda: [future.result() for future in [submit() for _ in range(count)]]

        def ours() -> float:
            return rate(all_of(lambda: pool.submit(function)))

        def process_pool() -> float:
            return rate(all_of(lambda: processes.submit(entries.noop)))

        def raw_tasks() -> float:
            return rate(lambda: ray.get([raw_noop.remote() for _ in range(count)]))

        def ray_actor_pool() -> float:
            return rate(lambda: list(actor_pool.map(lambda a, v: a.noop.remote(v), range(count))))

        yield Figure(
            f"IsolatePool.submit throughput, {MEMBERS} members, {count:,} no-op tasks{which}",
            "tasks/s",
            higher_is_better=True,
            contenders={
                OURS: ours,
                f"ProcessPoolExecutor({MEMBERS})": process_pool,
                "raw @ray.remote tasks": raw_tasks,
                f"ray.util.ActorPool, {MEMBERS} sync actors": ray_actor_pool,
            },
            rounds=3 if quick else 7,
        )


@contextmanager
def pool_round_trip(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """One no-op task at a time through a warm pool, against a raw Ray task and the others."""
    raw_noop = ray.remote(max_retries=0)(entries.noop)
    ray.get([raw_noop.remote() for _ in range(8)])
    with _contenders() as (pool, processes, actor_pool):

        def ray_actor_pool() -> float:
            def round_trip() -> None:
                actor_pool.submit(lambda a, v: a.noop.remote(v), None)
                actor_pool.get_next()

            return milliseconds(round_trip)

        yield Figure(
            "IsolatePool.run no-op round trip",
            "ms",
            higher_is_better=False,
            contenders={
                OURS: lambda: milliseconds(lambda: pool.run(entries.noop).result()),
                "raw @ray.remote task": lambda: milliseconds(lambda: ray.get(raw_noop.remote())),
                f"ProcessPoolExecutor({MEMBERS})": lambda: milliseconds(
                    lambda: processes.submit(entries.noop).result()
                ),
                f"ray.util.ActorPool, {MEMBERS} sync actors": ray_actor_pool,
            },
            rounds=30 if quick else 300,
        )


@contextmanager
def pool_replacement(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """A member SIGKILLed mid-task: from the kill until its task has failed and a new
    task has run on its replacement. Against a raw actor Ray restarts (``max_restarts``):
    from the kill until a call runs on the restarted actor."""
    port: ReceivePort[Any] = ReceivePort("bench-pool-kill")
    pool = IsolatePool(1, debug_name="bench-replaced")
    restarted = actor(entries.RawNoop).options(max_restarts=-1).remote()
    pool.run(entries.noop).result()

    def ours() -> float:
        blocked = pool.run(entries.pid_then_block, port.send_port)
        pid = loop.run_until_complete(anext(port))
        started = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        try:
            blocked.result()
        except Exception:  # the expected RemoteError
            pass
        else:
            raise AssertionError("a killed member's task succeeded")
        pool.run(entries.noop).result()
        return (time.perf_counter() - started) * 1000

    def raw_restart() -> float:
        pid = ray.get(restarted.pid.remote())
        started = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while True:
            try:
                if ray.get(restarted.pid.remote()) != pid:
                    break
            except ray.exceptions.RayActorError:
                pass  # restarting: Ray fails calls meanwhile
        return (time.perf_counter() - started) * 1000

    try:
        yield Figure(
            "pool member SIGKILLed: task failed + replacement serving",
            "ms",
            higher_is_better=False,
            contenders={OURS: ours, "raw actor restarted by Ray (max_restarts)": raw_restart},
            rounds=3 if quick else 10,
        )
    finally:
        pool.close()
        port.close()
        ray.kill(restarted)
