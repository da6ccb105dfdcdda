"""Isolate.stream and IsolatePool.stream: items as they come, backpressure, stopping, errors."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rayisolates import Isolate, IsolatePool, IsolateStream, ReceivePort, RemoteError

from . import entries
from .support import run, settle

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def pool(ray_runtime: dict[str, Any]) -> Iterator[IsolatePool]:
    with IsolatePool(2, debug_name="stream-pool") as shared:
        yield shared


def both(pool: IsolatePool) -> list[Any]:
    """A way to start a stream on a new isolate, and one on a pool member."""
    return [Isolate.stream, pool.stream]


def test_sync_and_async_generators_stream_in_order(pool: IsolatePool) -> None:
    for start in both(pool):
        assert list(start(entries.count_up, 1000, buffer=8)) == list(range(1000))

        async def collect(start: Any = start) -> list[int]:
            return [i async for i in start(entries.count_up_async, 500)]

        assert run(collect()) == list(range(500))


def test_closures_and_next_on_the_stream_itself(pool: IsolatePool) -> None:
    step = 3

    def multiples(n: int) -> Iterator[int]:
        for i in range(n):
            yield i * step

    stream = Isolate.stream(multiples, 4)
    assert [next(stream), next(stream)] == [0, 3]
    assert list(stream) == [6, 9]
    assert list(pool.stream(multiples, 3)) == [0, 3, 6]


def test_errors_come_after_the_items_before_them(pool: IsolatePool) -> None:
    for start in both(pool):
        got: list[int] = []
        with pytest.raises(ValueError, match="failed after 5") as raised:
            for item in start(entries.count_then_fail, 5):
                got.append(item)
        assert got == [0, 1, 2, 3, 4]
        assert "Remote traceback" in "".join(getattr(raised.value, "__notes__", []))


def test_the_producer_waits_for_the_consumer(pool: IsolatePool) -> None:
    """At most ``buffer`` items are produced and not taken; stopping runs its finally."""
    for start in both(pool):
        report: ReceivePort[Any] = ReceivePort()
        stream = start(entries.endless_reporting, report.send_port, buffer=4)
        taken = [next(stream) for _ in range(10)]
        time.sleep(0.3)  # room for a producer that ignored its credits to run ahead
        stream.close()
        closed, produced = run(anext(report))
        report.close()
        assert taken == list(range(10)) and closed == "closed"
        assert produced <= 10 + 4, produced


def test_break_and_dropping_the_stream_stop_the_producer(pool: IsolatePool) -> None:
    for start in both(pool):
        report: ReceivePort[Any] = ReceivePort()
        for item in start(entries.endless_reporting, report.send_port, buffer=2):
            if item == 5:
                break
        assert run(anext(report))[0] == "closed"

        async def async_break(start: Any = start, report: Any = report) -> None:
            async for item in start(entries.endless_reporting, report.send_port):
                if item == 3:
                    break

        run(async_break())
        assert run(anext(report))[0] == "closed"
        stream = start(entries.endless_reporting, report.send_port)
        next(stream)
        del stream
        gc.collect()
        assert run(anext(report))[0] == "closed"
        report.close()


@pytest.mark.parametrize("producer", [entries.stuck_after_one, entries.stuck_after_one_async])
def test_a_producer_stuck_in_sync_code_is_ended_by_force(pool: IsolatePool, producer: Any) -> None:
    """The item made before it got stuck arrives (nothing waits for the stuck loop to send
    it); stopping ends it by force, and the pool replaces its member."""
    replaced = pool.stats()["replaced"]
    for start in both(pool):
        report: ReceivePort[Any] = ReceivePort()
        stream = start(producer, report.send_port)
        assert next(stream) == "one"
        started = time.perf_counter()
        stream.close()
        seconds = time.perf_counter() - started
        assert seconds < 10, seconds
        with pytest.raises(StopIteration):
            next(stream)
        report.close()
    settle(pool, replaced=replaced + 1)  # its exit reaches the pool a moment later


def test_a_producer_that_dies_gives_remote_error_after_its_items(pool: IsolatePool) -> None:
    for start in both(pool):
        got: list[int] = []
        with pytest.raises(RemoteError):
            for item in start(entries.die_after, 3):
                got.append(item)
        assert got == list(range(len(got))) and len(got) <= 3


def test_large_items_come_through_the_object_store(pool: IsolatePool) -> None:
    for start in both(pool):
        for i, array in enumerate(start(entries.arrays, 3, 16, buffer=2)):
            assert array.shape == (2 * 1024 * 1024,) and int(array[-1]) == i
            assert not array.flags.writeable  # a view of the object store, no copy


def test_bad_input_is_refused_before_anything_starts(pool: IsolatePool) -> None:
    for start in both(pool):
        with pytest.raises(TypeError, match="argument 0"):
            start(entries.count_up, threading.Lock())
        with pytest.raises(ValueError, match="buffer"):
            start(entries.count_up, 3, buffer=0)
        with pytest.raises(TypeError, match="generator function"):
            start(42)
    with pytest.raises(TypeError, match="needs a generator function"):
        list(Isolate.stream(len, [1, 2]))  # type: ignore[arg-type]


def test_aclose_and_isinstance() -> None:
    async def main() -> None:
        stream = Isolate.stream(entries.count_up, 100_000, buffer=4)
        assert isinstance(stream, IsolateStream)
        assert await stream.__anext__() == 0
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()

    run(main())


@pytest.mark.timeout(300)
def test_a_stream_across_nodes(ray_runtime: dict[str, Any]) -> None:
    far = ray_runtime["nodes"]["a"]
    items = list(Isolate.stream(entries.node_items, 50, resources={"node_a": 1}))
    assert items == [(far, i) for i in range(50)]


def object_store(gcs_address: str) -> tuple[int, int]:
    """Bytes in the cluster's object stores now, and spilled to disk so far."""
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    stats = get_memory_info_reply(get_state_from_address(gcs_address)).store_stats
    return int(stats.object_store_bytes_used), int(stats.spilled_bytes_total)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ten_gigabytes_to_a_slow_consumer_keep_memory_bounded(
    ray_runtime: dict[str, Any],
) -> None:
    """200 arrays of 50 MB, buffer 4: the object stores never hold more than a few of
    them and nothing is spilled, however far behind the consumer is. (The stores are
    the cluster's: what earlier tests left there is measured first and set aside.)"""
    used_before, spilled_before = object_store(ray_runtime["gcs_address"])
    total, peak = 0, 0
    # On the driver's node: each array lives in one store (across nodes it would be
    # counted twice, the producer's and the consumer's copy).
    arrays = Isolate.stream(entries.arrays, 200, 50, buffer=4, resources={"node_head": 1})
    for i, array in enumerate(arrays):
        total += array.nbytes
        assert int(array[0]) == i
        del array
        time.sleep(0.02)  # a slow consumer: the producer waits for it
        if i % 5 == 0:
            peak = max(peak, object_store(ray_runtime["gcs_address"])[0])
    _, spilled_after = object_store(ray_runtime["gcs_address"])
    assert total == 200 * 50 * 2**20
    assert spilled_after == spilled_before
    assert peak - used_before < 20 * 50 * 2**20, (peak, used_before)
    print(
        f"10 GB streamed; object stores held at most {(peak - used_before) / 2**20:.0f} MB "
        f"more than the {used_before / 2**20:.0f} MB before"
    )
