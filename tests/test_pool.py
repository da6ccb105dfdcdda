"""IsolatePool: balanced tasks as port messages, members replaced, retries, timeouts, scaling."""

from __future__ import annotations

import asyncio
import gc
import itertools
import operator
import sys
import threading
import time
import types
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray.cluster_utils import Cluster

from rayisolates import Isolate, IsolatePool, ReceivePort, RemoteError

from . import entries
from .support import run, settle

pytestmark = pytest.mark.timeout(180)

MB = 1024 * 1024


@pytest.fixture(scope="module")
def pool(ray_runtime: dict[str, Any]) -> Iterator[IsolatePool]:
    """Three members shared by the tests that leave them as they found them."""
    with IsolatePool(3, debug_name="test-pool") as shared:
        yield shared


def test_ten_thousand_tasks_each_give_their_own_result(pool: IsolatePool) -> None:
    futures = [pool.run(operator.mul, i, 3) for i in range(10_000)]
    assert [future.result(120) for future in futures] == [3 * i for i in range(10_000)]
    assert pool.stats()["queued"] == 0


def test_lambdas_closures_and_async_functions(pool: IsolatePool) -> None:
    offset = 10

    async def later_double(x: int) -> int:
        await asyncio.sleep(0.001)
        return 2 * x

    assert pool.run(lambda x: x + offset, 1).result(60) == 11
    assert pool.run(later_double, 21).result(60) == 42

    async def awaited() -> list[int]:
        return [await pool.run(lambda: 7), await pool.run(later_double, 4)]

    assert run(awaited()) == [7, 8]


def test_large_results_come_back_through_the_object_store(pool: IsolatePool) -> None:
    array = pool.run(np.ones, 4_000_000).result(60)  # 32 MB
    assert array.shape == (4_000_000,) and float(array.sum()) == 4_000_000.0


def test_errors_keep_their_type_and_the_remote_stack(pool: IsolatePool) -> None:
    with pytest.raises(ZeroDivisionError) as raised:
        pool.run(operator.truediv, 1, 0).result(60)
    assert "Remote traceback" in "".join(getattr(raised.value, "__notes__", []))


def test_an_async_task_that_raises_cancelled_error_is_answered(pool: IsolatePool) -> None:
    async def cancelled() -> None:
        raise asyncio.CancelledError  # a BaseException: it once left its task unanswered

    with pytest.raises(RemoteError, match="was cancelled"):
        pool.run(cancelled).result(60)
    assert pool.run(operator.add, 1, 2).result(60) == 3


def test_bad_input_is_refused_at_run_and_the_pool_keeps_working(pool: IsolatePool) -> None:
    with pytest.raises(TypeError, match=r"IsolatePool.run\(\) cannot send argument 1"):
        pool.run(operator.add, 1, threading.Lock())
    with pytest.raises(TypeError, match="needs a callable"):
        pool.run(42)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="timeout"):
        pool.run(operator.add, 1, 2, timeout=0)
    assert pool.run(operator.add, 1, 2).result(60) == 3


def test_a_task_or_result_that_cannot_load_on_the_other_side_fails_alone(
    pool: IsolatePool,
) -> None:
    """A function whose module exists only here, a result whose class exists only in the
    member: each fails its own task, naming the cause; no member ends."""
    module = types.ModuleType("made_in_the_driver")
    exec("def double(x):\n    return 2 * x\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        before = pool.stats()["replaced"]
        with pytest.raises(ModuleNotFoundError, match="made_in_the_driver"):
            pool.run(module.double, 21).result(60)
        with pytest.raises(RemoteError, match=r"cannot be rebuilt here.*made_in_the_member"):
            pool.run(entries.member_only_instance).result(60)
        assert pool.run(operator.add, 1, 2).result(60) == 3
        assert pool.stats()["replaced"] == before
    finally:
        del sys.modules[module.__name__]


def test_map_is_lazy_ordered_and_async_too(pool: IsolatePool) -> None:
    assert list(pool.map(operator.neg, range(100))) == [-i for i in range(100)]
    assert sorted(pool.map(operator.neg, range(50), ordered=False)) == sorted(-i for i in range(50))

    async def collect(ordered: bool) -> list[int]:
        return [value async for value in pool.map(operator.neg, range(30), ordered=ordered)]

    assert run(collect(True)) == [-i for i in range(30)]
    assert sorted(run(collect(False))) == sorted(-i for i in range(30))


def test_map_over_an_endless_iterable_with_a_slow_consumer_stays_bounded(
    pool: IsolatePool,
) -> None:
    pulled: list[int] = []

    def endless() -> Iterator[int]:
        for i in itertools.count():
            pulled.append(i)
            yield i

    results = pool.map(operator.neg, endless(), buffer=8)
    for consumed in range(1, 41):
        assert next(results) == -(consumed - 1)
        if consumed % 10 == 0:
            time.sleep(0.05)  # a slow consumer: the pool must not run ahead
        assert len(pulled) - consumed <= 8


def test_a_member_killed_mid_task_fails_it_and_is_replaced(pool: IsolatePool) -> None:
    before = pool.stats()
    with pytest.raises(RemoteError, match="ended before it finished"):
        pool.run(entries.always_die).result(60)
    stats = settle(pool, members=3)
    assert stats["replaced"] == before["replaced"] + 1
    assert pool.run(operator.add, 2, 2).result(60) == 4


def test_with_retries_a_killed_members_task_runs_again(tmp_path: Path) -> None:
    with IsolatePool(2, retries=1) as pool:
        assert pool.run(entries.die_once, str(tmp_path / "died")).result(60) == "survived"
        stats = pool.stats()
        assert (stats["retried"], stats["replaced"]) == (1, 1)


def test_a_poison_task_fails_after_its_retries_and_stops_killing() -> None:
    with IsolatePool(2, retries=2) as pool:
        with pytest.raises(RemoteError, match="ended 3 pool members"):
            pool.run(entries.always_die).result(120)
        settle(pool, members=2)
        assert pool.stats()["replaced"] == 3
        assert pool.run(operator.add, 1, 1).result(60) == 2


def test_a_task_past_its_timeout_fails_and_its_member_is_replaced() -> None:
    with IsolatePool(1) as pool:
        stuck_pid = pool.run(entries.member_pid).result(60)
        with pytest.raises(TimeoutError, match=r"did not finish within 0\.5 s"):
            pool.run(time.sleep, 60, timeout=0.5).result(30)
        assert pool.run(entries.member_pid).result(60) != stuck_pid
        assert pool.stats()["replaced"] == 1


def test_members_above_min_size_end_when_idle_and_come_back_under_load() -> None:
    port: ReceivePort[Any] = ReceivePort()

    def three_at_once(pool: IsolatePool) -> set[int]:
        """Three tasks that each hold a member until all three run: the pool must grow."""
        held = [pool.run(entries.hold_until_released, port.send_port) for _ in range(3)]
        announced = [run(anext(port)) for _ in held]
        for _, _, release in announced:
            release.send("go")
        assert sorted(f.result(60) for f in held) == sorted(pid for pid, _, _ in announced)
        return {pid for pid, _, _ in announced}

    with IsolatePool(3, min_size=1, idle_seconds=0.5) as pool:
        assert len(three_at_once(pool)) == 3
        settle(pool, members=1)
        assert len(three_at_once(pool)) == 3
        assert pool.stats()["replaced"] == 0
    port.close()


def test_async_with_and_a_pool_inside_a_spawned_isolate() -> None:
    async def main() -> list[int]:
        async with IsolatePool(1) as pool:
            assert await pool.run(operator.add, 20, 22) == 42
        with pytest.raises(RuntimeError, match="closed"):
            pool.run(operator.add, 1, 1)
        port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(entries.pool_inside, port.send_port)
        squares: list[int] = await anext(port)
        port.close()
        return squares

    assert run(main(), timeout=150) == [i * i for i in range(20)]


def test_close_from_inside_an_event_loop_points_to_aclose() -> None:
    async def main() -> None:
        pool = IsolatePool(1)
        with pytest.raises(RuntimeError, match="aclose"):
            pool.close()
        await pool.aclose()

    run(main())


def test_bad_sizes_are_refused() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"size": 0}, "size"),
        ({"size": 2, "min_size": 3}, "min_size"),
        ({"size": 2, "max_parallel": 0}, "max_parallel"),
        ({"size": 2, "retries": -1}, "retries"),
    ]
    for arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            IsolatePool(**arguments)


@pytest.mark.timeout(300)
def test_spread_members_survive_the_loss_of_a_node(
    cluster: Cluster, ray_runtime: dict[str, Any]
) -> None:
    """Members SPREAD over three extra nodes with room for two each, so at least two
    nodes hold members; one of those nodes is removed while its members run tasks."""
    extra = [
        cluster.add_node(num_cpus=1, resources={"pool_slot": 2}, object_store_memory=200 * MB)
        for _ in range(3)
    ]
    cluster.wait_for_nodes()
    port: ReceivePort[Any] = ReceivePort()
    options: dict[str, Any] = {"scheduling_strategy": "SPREAD", "resources": {"pool_slot": 1}}
    try:
        with IsolatePool(3, retries=1, debug_name="spread", **options) as pool:
            # Tasks that hold their member until released: one on each member.
            held = [pool.run(entries.hold_until_released, port.send_port) for _ in range(3)]
            announced = [run(anext(port)) for _ in held]
            nodes = [node for _, node, _ in announced]
            assert len(set(nodes)) >= 2, nodes
            doomed = next(node for node in extra if node.node_id in nodes)
            for _, node, release in announced:
                if node != doomed.node_id:
                    release.send("go")
            cluster.remove_node(doomed, allow_graceful=False)
            extra.remove(doomed)
            lost = nodes.count(doomed.node_id)
            for _ in range(lost):  # run again, on another member
                _, node, release = run(anext(port), timeout=180)
                assert node != doomed.node_id
                release.send("go")
            assert all(isinstance(future.result(60), int) for future in held)
            stats = settle(pool, members=3)
            assert (stats["replaced"], stats["retried"], stats["failed"]) == (lost, lost, 0)
    finally:
        port.close()
        for node in extra:
            cluster.remove_node(node)


def test_an_unclosed_pool_is_collected_and_ends_its_members() -> None:
    pool = IsolatePool(2, debug_name="dropped")
    engine = pool._engine
    with engine.settled:  # both members ready (their isolates known)
        assert engine.settled.wait_for(
            lambda: [bool(m.address and m.handle) for m in engine.state.members()] == [True] * 2,
            60,
        )
        isolates = [member.handle for member in engine.state.members()]
    ended: ReceivePort[Any] = ReceivePort("ended")
    for isolate in isolates:
        isolate.add_on_exit_listener(ended.send_port, isolate.debug_name)
    running = pool.run(entries.member_pid, 0.5)  # what it was given still runs
    collected = weakref.ref(pool)
    del pool
    gc.collect()
    assert collected() is None
    assert running.result(60) > 0

    async def all_ended() -> set[str]:
        return {await anext(ended) for _ in isolates}

    assert run(all_ended()) == {"dropped-0", "dropped-1"}
    ended.close()
