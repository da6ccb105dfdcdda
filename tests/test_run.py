"""Isolate.run and compute against the session's real Ray."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rayisolates import Isolate, RemoteError, compute

from .support import in_object_store


class CustomError(Exception):
    """Defined in a test module: must still reach the worker and come back."""

    def __init__(self, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


class StubbornError(Exception):
    """An exception that pickles but cannot be rebuilt from its args."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(a + b)


def add(a: int, b: int) -> int:
    return a + b


async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def inner_failure(value: int) -> None:
    raise ValueError(f"bad value {value}")


def failing(value: int) -> None:
    inner_failure(value)


def raise_custom(code: int) -> None:
    raise CustomError(code)


def raise_stubborn() -> None:
    raise StubbornError(1, 2)


def crash() -> None:
    os._exit(7)


def sleep_forever() -> None:
    time.sleep(3600)


def assigned_resources() -> dict[str, float]:
    return dict(ray.get_runtime_context().get_assigned_resources())


def task_name() -> str:
    return str(ray.get_runtime_context().get_task_name())


def environment_variable(name: str) -> str | None:
    return os.environ.get(name)


def node_id() -> str:
    return str(ray.get_runtime_context().get_node_id())


def crash_first_time(marker: str) -> str:
    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(3)
    return "second attempt"


def raise_first_time(marker: str) -> str:
    if not Path(marker).exists():
        Path(marker).touch()
        raise RuntimeError("first attempt fails")
    return "second attempt"


def big_array(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


def describe_array(array: np.ndarray) -> tuple[int, bool]:
    return int(array.sum()), bool(array.flags.writeable)


def test_plain_function_result() -> None:
    assert Isolate.run(add, 2, 3).result(timeout=60) == 5


def test_closure_and_lambda() -> None:
    offset = 40
    assert Isolate.run(lambda x: x + offset, 2).result(timeout=60) == 42

    def nested(x: int) -> list[int]:
        return [x, offset]

    assert Isolate.run(nested, 1).result(timeout=60) == [1, 40]


def test_async_function_is_awaited_in_the_worker() -> None:
    assert Isolate.run(async_double, 21).result(timeout=60) == 42


def test_future_is_awaitable() -> None:
    async def main() -> list[int]:
        return list(await asyncio.gather(Isolate.run(add, 1, 1), Isolate.run(async_double, 2)))

    assert asyncio.run(main()) == [2, 4]


def test_compute_is_run_with_one_message() -> None:
    assert compute(len, [1, 2, 3]).result(timeout=60) == 3


def test_exception_keeps_type_and_remote_traceback() -> None:
    future = Isolate.run(failing, 9)
    with pytest.raises(ValueError, match="bad value 9") as caught:
        future.result(timeout=60)
    assert type(caught.value) is ValueError
    notes = "\n".join(caught.value.__notes__)
    assert "Remote traceback" in notes
    assert "inner_failure" in notes and "failing" in notes


def test_exception_raised_when_awaited_too() -> None:
    async def main() -> None:
        await Isolate.run(failing, 1)

    with pytest.raises(ValueError, match="bad value 1"):
        asyncio.run(main())


def test_exception_class_from_test_module_comes_back() -> None:
    with pytest.raises(CustomError) as caught:
        Isolate.run(raise_custom, 3).result(timeout=60)
    assert caught.value.code == 3


def test_exception_that_cannot_be_rebuilt_is_remote_error() -> None:
    with pytest.raises(RemoteError) as caught:
        Isolate.run(raise_stubborn).result(timeout=60)
    assert "StubbornError" in caught.value.description
    assert "raise_stubborn" in caught.value.stack_trace


def test_worker_death_is_remote_error() -> None:
    with pytest.raises(RemoteError, match="Computation ended without result") as caught:
        Isolate.run(crash).result(timeout=60)
    assert not type(caught.value).__module__.startswith("ray.")
    assert Isolate.run(add, 1, 2).result(timeout=60) == 3


def test_unpicklable_argument_is_type_error_naming_it() -> None:
    lock = threading.Lock()
    with pytest.raises(TypeError, match=r"argument 1\['guard'\].*lock"):
        Isolate.run(add, 1, {"guard": lock})
    assert Isolate.run(add, 1, 1).result(timeout=60) == 2


def test_unpicklable_closure_is_type_error_naming_the_function() -> None:
    lock = threading.Lock()

    def uses_lock() -> bool:
        return lock.locked()

    with pytest.raises(TypeError, match="the function"):
        Isolate.run(uses_lock)


def test_bad_calls_are_type_errors() -> None:
    with pytest.raises(TypeError, match="needs a callable"):
        Isolate.run(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"unknown option.*verbose.*functools.partial"):
        Isolate.run(add, 1, verbose=True)


def test_cancel_interrupts_the_task() -> None:
    future = Isolate.run(sleep_forever)
    with pytest.raises(TimeoutError):
        future.result(timeout=0.2)
    assert not future.done()
    assert future.cancel() is True
    assert future.done() and future.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result()

    async def main() -> None:
        await future

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(future._ref, timeout=60)


def test_cancel_after_completion_keeps_the_result() -> None:
    future = Isolate.run(add, 2, 2)
    assert future.result(timeout=60) == 4
    assert future.cancel() is False
    assert future.result() == 4


def test_resource_options_reach_ray() -> None:
    assert Isolate.run(assigned_resources, num_cpus=0.5).result(timeout=60) == {"CPU": 0.5}
    assigned = Isolate.run(assigned_resources, num_cpus=0, resources={"test_slot": 1}).result(
        timeout=60
    )
    assert assigned == {"test_slot": 1.0}


def test_scheduling_strategy_and_runtime_env_reach_ray(ray_runtime: dict[str, str]) -> None:
    here = NodeAffinitySchedulingStrategy(ray_runtime["node_id"], soft=False)
    assert (
        Isolate.run(node_id, scheduling_strategy=here).result(timeout=60)
        == (ray_runtime["node_id"])
    )
    environment = {"env_vars": {"RAYISOLATES_PROBE": "on"}}
    probe = Isolate.run(environment_variable, "RAYISOLATES_PROBE", runtime_env=environment)
    assert probe.result(timeout=90) == "on"


def test_debug_name_names_the_task() -> None:
    assert Isolate.run(task_name, debug_name="named-run").result(timeout=60) == "named-run"


def test_retries_only_when_asked(tmp_path: Path) -> None:
    crash_marker = str(tmp_path / "crashed")
    result = Isolate.run(crash_first_time, crash_marker, max_retries=1).result(timeout=60)
    assert result == "second attempt"
    raise_marker = str(tmp_path / "raised")
    retried = Isolate.run(raise_first_time, raise_marker, max_retries=1, retry_exceptions=True)
    assert retried.result(timeout=60) == "second attempt"


def test_numpy_result_is_a_read_only_view_of_the_object_store() -> None:
    array = Isolate.run(big_array, 1_000_000).result(timeout=60)
    assert array[-1] == 999_999
    assert not array.flags.writeable
    assert not array.flags.owndata
    assert in_object_store(array)


def test_large_argument_travels_through_the_object_store() -> None:
    array = np.ones(8_000_000, dtype=np.float64)
    total, writeable = Isolate.run(describe_array, array).result(timeout=60)
    assert total == 8_000_000
    assert writeable is False


def test_two_hundred_concurrent_runs() -> None:
    futures = [Isolate.run(add, i, i) for i in range(200)]
    assert [future.result(timeout=90) for future in futures] == [2 * i for i in range(200)]
