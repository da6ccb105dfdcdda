"""IsolateFuture and IsolatePool with Python's own interfaces: the waits and callbacks of
``concurrent.futures`` and ``asyncio``, the ``Executor`` contract (``submit``,
``map``, ``shutdown``, ``run_in_executor``), cancelling, and functions sent once."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import operator
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from rayisolates import Isolate, IsolateFuture, IsolatePool, ReceivePort

from . import entries
from .support import run, settle

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def pool(ray_runtime: dict[str, Any]) -> Iterator[IsolatePool]:
    """Two members shared by the tests that leave them as they found them."""
    shared = IsolatePool(2, debug_name="test-executor")
    all_ready(shared)
    yield shared
    shared.close(timeout=60)  # a failed test may leave a task held: ended all the same


def all_ready(pool: IsolatePool) -> None:
    """Wait until every member has announced its task port: a short task is then never
    sent ahead behind a held one while another member is still starting."""
    engine = pool._engine
    with engine.lock:
        assert engine.settled.wait_for(
            lambda: (
                all(m.address is not None for m in engine.state.members())
                and len(engine.state.members()) == pool.size
            ),
            60,
        )


def held(pool: IsolatePool) -> tuple[IsolateFuture[int], Callable[[], None]]:
    """A pool task that runs until released: its future, and the release."""
    port: ReceivePort[Any] = ReceivePort("held")
    future = pool.run(entries.hold_until_released, port.send_port)
    _, _, release_port = run(anext(port), 60)
    port.close()
    return future, lambda: release_port.send("go")


# The standard waits ---------------------------------------------------------------------


def test_concurrent_futures_wait_and_as_completed(pool: IsolatePool) -> None:
    futures = [pool.submit(operator.add, i, 1) for i in range(20)]
    futures.append(Isolate.run(operator.mul, 3, 4))
    done, not_done = cf.wait(futures, timeout=60, return_when=cf.ALL_COMPLETED)
    assert done == set(futures) and not not_done
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=60)) == sorted(
        [*range(1, 21), 12]
    )

    blocked, release = held(pool)
    all_ready(pool)
    quick = pool.submit(operator.neg, 5)
    done, not_done = cf.wait([blocked, quick], timeout=60, return_when=cf.FIRST_COMPLETED)
    assert done == {quick} and not_done == {blocked}
    failing = pool.submit(operator.truediv, 1, 0)
    done, not_done = cf.wait([blocked, failing], timeout=60, return_when=cf.FIRST_EXCEPTION)
    assert done == {failing} and not_done == {blocked}
    assert isinstance(failing.exception(timeout=5), ZeroDivisionError)
    with pytest.raises(TimeoutError):
        blocked.exception(timeout=0.05)
    assert not blocked.done() and not blocked.running() and not blocked.cancelled()
    release()
    assert blocked.exception(timeout=60) is None and blocked.done()


def test_callbacks_run_once_done_and_at_once_when_added_late(pool: IsolatePool) -> None:
    seen: list[Any] = []
    arrived = threading.Event()
    future = pool.submit(operator.add, 2, 2)

    def first(done: cf.Future[int]) -> None:
        seen.append(done.result())
        arrived.set()

    future.add_done_callback(first)
    assert arrived.wait(60)
    future.add_done_callback(lambda f: seen.append(("late", f.result())))
    assert seen == [4, ("late", 4)]


def test_asyncio_waits_take_isolate_futures(pool: IsolatePool) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        gathered = await asyncio.gather(pool.submit(abs, -3), Isolate.run(operator.add, 1, 2))
        assert list(gathered) == [3, 3]
        futures = [pool.submit(operator.mul, i, i) for i in range(5)]
        done, pending = await asyncio.wait(
            [asyncio.wrap_future(f) for f in futures], return_when=asyncio.ALL_COMPLETED
        )
        assert sorted(d.result() for d in done) == [0, 1, 4, 9, 16] and not pending
        assert sorted([await f for f in asyncio.as_completed(futures)]) == [0, 1, 4, 9, 16]
        assert await asyncio.wait_for(pool.submit(operator.neg, 1), 60) == -1
        assert await loop.run_in_executor(pool, operator.add, 2, 3) == 5

    run(main())


def test_wait_for_past_its_timeout_cancels_the_task_and_replaces_its_member(
    ray_runtime: dict[str, Any],
) -> None:
    with IsolatePool(1, debug_name="test-wait-for") as own:
        own.submit(operator.add, 0, 0).result(60)
        blocked, _ = held(own)
        before = own.stats()["replaced"]

        async def main() -> None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(blocked, 0.1)

        run(main())
        assert blocked.cancelled()
        settle(own, replaced=before + 1, running=0, cancelled=1)
        assert own.submit(operator.add, 1, 1).result(60) == 2


# Executor -----------------------------------------------------------------------------


def test_submit_passes_keyword_arguments(pool: IsolatePool) -> None:
    assert pool.submit(sorted, [3, 1, 2], reverse=True).result(60) == [3, 2, 1]
    assert pool.submit(dict, a=1, fn=2).result(60) == {"a": 1, "fn": 2}
    assert isinstance(pool, cf.Executor)


def test_an_unsendable_keyword_argument_is_named_and_nothing_is_submitted(
    pool: IsolatePool,
) -> None:
    before = pool.stats()
    with pytest.raises(TypeError, match=r"submit\(\) cannot send keyword argument 'key'"):
        pool.submit(sorted, [1], key=threading.Lock())
    with pytest.raises(TypeError, match=r"cannot send argument 0"):
        pool.submit(sorted, threading.Lock())
    with pytest.raises(TypeError, match="needs a callable"):
        pool.submit(3)  # type: ignore[call-overload]
    after = pool.stats()
    assert after["completed"] == before["completed"] and after["queued"] == 0
    assert pool.submit(operator.add, 1, 2).result(60) == 3  # still working


def test_map_takes_several_iterables_chunks_and_buffersize(pool: IsolatePool) -> None:
    assert list(pool.map(operator.add, range(10), range(100, 105))) == [100, 102, 104, 106, 108]
    assert list(pool.map(abs, range(-50, 50), chunksize=7)) == [abs(i) for i in range(-50, 50)]
    assert list(pool.map(abs, range(-5, 5), buffersize=3)) == [abs(i) for i in range(-5, 5)]
    unordered = pool.map(operator.neg, range(30), chunksize=4, ordered=False)
    assert sorted(unordered) == sorted(-i for i in range(30))

    async def main() -> list[int]:
        return [x async for x in pool.map(operator.mul, [1, 2, 3], [4, 5, 6], chunksize=2)]

    assert run(main()) == [4, 10, 18]
    chunked = pool.map(operator.floordiv, [1] * 6, [1, 1, 1, 0, 1, 1], chunksize=2)
    assert next(chunked) == 1 and next(chunked) == 1
    with pytest.raises(ZeroDivisionError):
        next(chunked)  # its whole chunk fails, the item before the error's too
    assert list(chunked) == [1, 1]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"chunksize": 0}, ValueError),
        ({"buffer": 0}, ValueError),
        ({"buffer": 2, "buffersize": 3}, TypeError),
        ({"timeout": -1}, ValueError),
    ],
)
def test_map_refuses_bad_bounds(pool: IsolatePool, kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error, match=r"IsolatePool.map\(\)"):
        pool.map(abs, [1], **kwargs)
    with pytest.raises(TypeError, match="at least one iterable"):
        pool.map(abs)


def test_map_past_its_timeout_raises_and_cancels_what_is_pending(
    ray_runtime: dict[str, Any], tmp_path: Path
) -> None:
    with IsolatePool(1, debug_name="test-map-timeout") as own:
        port: ReceivePort[Any] = ReceivePort("map-timeout")
        marks = [str(tmp_path / f"mark-{i}") for i in range(3)]
        results = own.map(entries.pid_then_block, [port.send_port], timeout=0.5)
        with pytest.raises(TimeoutError, match="timeout"):
            next(results)
        assert list(results) == []
        port.close()
        assert list(own.map(entries.touch, marks)) == marks  # a new member serves
        settle(own, cancelled=1, running=0)


# Cancelling -----------------------------------------------------------------------------


def test_a_queued_task_cancelled_never_runs(ray_runtime: dict[str, Any], tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    with IsolatePool(1, debug_name="test-cancel-queued") as own:
        blocked, release = held(own)
        queued = own.submit(entries.touch, str(mark))
        assert queued.cancel() and queued.cancelled() and queued.cancel()
        release()
        assert blocked.result(60) > 0
        assert own.stats()["replaced"] == 0
    assert not mark.exists()


def test_cancelling_a_running_task_ends_its_member_which_is_replaced(
    ray_runtime: dict[str, Any],
) -> None:
    port: ReceivePort[Any] = ReceivePort("cancel-running")
    with IsolatePool(1, debug_name="test-cancel-running") as own:
        running = own.submit(entries.pid_then_block, port.send_port)
        pid = run(anext(port), 60)
        assert running.cancel() and running.cancelled()
        with pytest.raises(cf.CancelledError):
            running.result(0)
        settle(own, replaced=1, cancelled=1, running=0)
        assert own.submit(os.getpid).result(60) != pid
    port.close()


def test_shutdown_cancel_futures_cancels_the_queued_and_finishes_the_running(
    ray_runtime: dict[str, Any], tmp_path: Path
) -> None:
    own = IsolatePool(1, debug_name="test-shutdown")
    blocked, release = held(own)
    marks = [tmp_path / f"queued-{i}" for i in range(5)]
    queued = [own.submit(entries.touch, str(mark)) for mark in marks]
    done = threading.Thread(target=own.shutdown, kwargs={"cancel_futures": True})
    done.start()
    for future in queued:
        with pytest.raises(cf.CancelledError):
            future.result(60)
    release()
    done.join(60)
    assert not done.is_alive()
    assert blocked.result(0) > 0
    assert not any(mark.exists() for mark in marks)
    with pytest.raises(RuntimeError, match="closed"):
        own.submit(abs, 1)


def test_shutdown_without_waiting_returns_at_once_and_ends_members_later(
    ray_runtime: dict[str, Any],
) -> None:
    own = IsolatePool(1, debug_name="test-shutdown-nowait")
    blocked, release = held(own)
    own.shutdown(wait=False)
    with pytest.raises(RuntimeError, match="closed"):
        own.submit(abs, 1)
    release()
    assert blocked.result(60) > 0
    settle(own, members=0)


# Functions sent once ------------------------------------------------------------------


def adder(k: int) -> Callable[[int], int]:
    return lambda x: x + k


def test_closures_that_differ_give_their_own_results_past_the_members_tables(
    pool: IsolatePool,
) -> None:
    from rayisolates._pool.functions import CAPACITY

    count = CAPACITY + 50
    futures = [pool.submit(adder(k), 1) for k in range(count)]
    assert [f.result(60) for f in futures] == [k + 1 for k in range(count)]
    again = [pool.submit(adder(k), 2) for k in range(20)]  # forgotten by now: sent again
    assert [f.result(60) for f in again] == [k + 2 for k in range(20)]


def test_a_rebound_closure_cell_is_seen_and_a_fresh_lambda_each_time_works(
    pool: IsolatePool,
) -> None:
    value = 1

    def read() -> int:
        return value

    assert pool.submit(read).result(60) == 1
    value = 2
    assert pool.submit(read).result(60) == 2
    assert [pool.submit(lambda: 7).result(60) for _ in range(5)] == [7] * 5
    scaled = functools.partial(operator.mul, 3)
    assert pool.submit(scaled, 5).result(60) == 15


def test_functions_too_large_or_holding_refs_travel_with_each_task(pool: IsolatePool) -> None:
    big = b"x" * 200_000
    ref = ray.put(41)
    assert [pool.submit(lambda: len(big)).result(60) for _ in range(3)] == [200_000] * 3
    assert [pool.submit(lambda: ray.get(ref) + 1).result(60) for _ in range(3)] == [42] * 3


def test_an_async_function_and_a_chunk_of_them(pool: IsolatePool) -> None:
    async def twice(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert pool.submit(twice, 4).result(60) == 8
    assert list(pool.map(twice, range(6), chunksize=4)) == [0, 2, 4, 6, 8, 10]
