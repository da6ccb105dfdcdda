"""A worker call's future: an ``IsolateFuture`` whose condition is made on first use.

It skips ``Future.__init__`` to keep pending calls light, so these check it is
still every bit an ``IsolateFuture`` to the standard functions, from several
threads at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import threading

import pytest

from rayisolates import IsolateFuture, RemoteError
from rayisolates._worker.calls import _CallFuture


def test_it_has_every_attribute_an_isolate_future_has() -> None:
    plain = vars(IsolateFuture("x"))
    light = vars(_CallFuture("x", "isolate-1"))
    assert set(plain) - {"_condition"} <= set(light), set(plain) - set(light)
    assert isinstance(_CallFuture("x", "isolate-1"), concurrent.futures.Future)


def test_it_keeps_fewer_objects_while_pending() -> None:
    gc.collect()
    before = len(gc.get_objects())
    pending = [_CallFuture("x", "isolate-1") for _ in range(1000)]
    assert (len(gc.get_objects()) - before) / len(pending) <= 4


def test_standard_functions_wait_for_it_across_threads() -> None:
    futures = [_CallFuture(f"call {i}", "isolate-1") for i in range(200)]
    settle = threading.Barrier(2)

    def settle_all() -> None:
        settle.wait()
        for i, future in enumerate(futures):
            if i % 3:
                future._succeed(i)
            else:
                future._fail(RemoteError(f"no {i}"))

    thread = threading.Thread(target=settle_all)
    thread.start()
    settle.wait()
    done, not_done = concurrent.futures.wait(futures, timeout=30)
    thread.join()
    assert not not_done and len(done) == 200
    some: list[concurrent.futures.Future[int]] = list(futures[1::3])
    completed = [f.result() for f in concurrent.futures.as_completed(some)]
    assert sorted(completed) == list(range(1, 200, 3))
    with pytest.raises(RemoteError, match="no 0"):
        futures[0].result()


def test_it_is_awaitable_cancellable_and_times_out() -> None:
    async def main() -> int:
        future = _CallFuture("answer", "isolate-1")
        asyncio.get_running_loop().call_soon(lambda: future._succeed(42))
        value: int = await future
        return value

    assert asyncio.run(main()) == 42
    cancelled = _CallFuture("dropped", "isolate-1")
    assert cancelled.cancel() and cancelled.cancelled()
    cancelled._succeed(1)  # the answer that comes later is ignored
    with pytest.raises(concurrent.futures.CancelledError):
        cancelled.result()
    with pytest.raises(TimeoutError, match="slow did not finish in time"):
        _CallFuture("slow", "isolate-1").result(timeout=0.01)


@pytest.mark.parametrize("fail", [False, True])
def test_settling_races_a_waiter_without_losing_the_wake_up(fail: bool) -> None:
    """A waiter making the condition while the answer is set (with or without it) is
    always woken: 300 rounds of the two at once."""
    for i in range(300):
        future = _CallFuture(f"call {i}", "isolate-1")
        got: list[object] = []

        def wait(future: _CallFuture = future, got: list[object] = got) -> None:
            try:
                got.append(future.result(timeout=30))
            except RemoteError as error:
                got.append(str(error))

        waiter = threading.Thread(target=wait)
        waiter.start()
        if fail:
            future._fail(RemoteError(f"no {i}"))
        else:
            future._succeed(i)
        waiter.join(30)
        assert got == [f"no {i}" if fail else i]
        with pytest.raises(concurrent.futures.InvalidStateError):
            future.set_result(0)
