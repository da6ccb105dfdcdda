"""IsolateWorker: an object in an isolate, its methods called from anywhere."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import pickle
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from rayisolates import (
    Isolate,
    IsolateFuture,
    IsolateSpawnException,
    IsolateStream,
    IsolateWorker,
    ReceivePort,
    RemoteError,
    SendPort,
)
from rayisolates._context.context import current
from rayisolates._status import render

from . import worker_entries
from .support import run
from .worker_entries import Recorder, Steps

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def worker(ray_runtime: dict[str, Any]) -> Iterator[IsolateWorker]:
    """One Recorder worker shared by the tests that only read and add."""
    with IsolateWorker.spawn(Recorder, 10, debug_name="test-recorder").result(60) as shared:
        yield shared


def test_sync_async_and_attribute_calls(worker: IsolateWorker) -> None:
    before = worker.get("total").result(30)
    assert worker.add(2).result(30) == before + 2
    assert worker.add_later(3).result(30) == before + 5
    assert worker.add(times=3).result(30) == before + 8  # the default step, by keyword
    assert worker.get("greeting").result(30) == "hello"
    assert worker.get("doubled").result(30) == 2 * (before + 8)
    assert isinstance(worker.add(0), IsolateFuture)


def test_generator_methods_give_streams(worker: IsolateWorker) -> None:
    stream = worker.count(100)
    assert isinstance(stream, IsolateStream)
    assert list(stream) == list(range(100))

    async def main() -> list[int]:
        return [item async for item in worker.count_async(4)]

    assert run(main()) == [0, 10, 20, 30]


def test_a_stopped_stream_closes_the_generator_and_the_worker_goes_on(
    worker: IsolateWorker,
) -> None:
    finalized = worker.get("finalized").result(30)
    endless = worker.count()  # no limit: only stopping ends it
    taken = []
    for item in endless:
        taken.append(item)
        if item == 4:
            break
    endless.close()
    assert taken == [0, 1, 2, 3, 4]
    assert worker.get("finalized").result(30) == finalized + 1
    assert worker.add(0).result(30) == worker.get("total").result(30)


def test_a_generator_method_waits_for_its_consumer(worker: IsolateWorker) -> None:
    """Backpressure: with a buffer of 16, the generator yields at most 16 items beyond
    those taken, however many turns its loop gets meanwhile (30 calls' worth)."""
    before = worker.get("produced").result(30)
    stream = worker.count()
    taken = [next(stream) for _ in range(10)]
    seen = [worker.get("produced").result(30) - before for _ in range(30)]
    stream.close()
    assert taken == list(range(10))
    assert 10 <= max(seen) <= 10 + 16, seen


def test_unknown_and_plain_attributes_raise_at_once(worker: IsolateWorker) -> None:
    with pytest.raises(AttributeError, match=r"'Recorder' worker has no attribute 'nope'"):
        worker.nope()
    with pytest.raises(AttributeError, match=r"worker.get\('greeting'\)"):
        worker.greeting()
    with pytest.raises(AttributeError, match=r"worker.get\('doubled'\)"):
        worker.doubled()
    with pytest.raises(AttributeError, match="not_there"):
        worker.get("not_there").result(30)
    assert {"add", "add_later", "count", "gate"} <= set(dir(worker))


def test_errors_come_back_as_their_type_with_the_remote_stack(worker: IsolateWorker) -> None:
    with pytest.raises(ValueError, match="boom") as caught:
        worker.fail("boom").result(30)
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "Remote traceback" in notes and "in fail" in notes, notes
    with pytest.raises(KeyError, match="later"):
        worker.fail_later().result(30)
    stream = worker.fail_in_stream()
    assert next(stream) == 1
    with pytest.raises(LookupError, match="mid-stream"):
        next(stream)
    with pytest.raises(TypeError, match=r"returning from Recorder.lock\(\)"):
        worker.lock().result(30)
    assert worker.add(0).result(30) == worker.get("total").result(30)  # still serving


def test_an_unsendable_argument_raises_at_the_call_and_nothing_is_sent(
    worker: IsolateWorker,
) -> None:
    started = len(worker.get("started").result(30))
    total = worker.get("total").result(30)
    with pytest.raises(TypeError, match=r"Recorder.add\(\) cannot send argument 0 \(<unlocked"):
        worker.add(threading.Lock())
    with pytest.raises(TypeError, match=r"cannot send keyword argument 'times'.*nothing was sent"):
        worker.add(1, times=threading.Lock())
    with pytest.raises(TypeError, match=r"argument 1"):
        worker.count(1, threading.Lock())
    assert len(worker.get("started").result(30)) == started  # no call reached it
    assert worker.add(1).result(30) == total + 1


def test_calls_from_one_caller_start_in_order() -> None:
    with IsolateWorker.spawn(Recorder, max_parallel=3).result(60) as recorder:
        tags = list(range(200))
        futures = [recorder.record(tag) if tag % 3 else recorder.add_later(1) for tag in tags]
        for future in futures:
            future.result(60)
        started = recorder.get("started").result(30)
    assert [tag for tag in started if tag != "add_later"] == [t for t in tags if t % 3]
    kinds = ["add_later" if tag % 3 == 0 else tag for tag in tags]
    assert started == kinds


def test_async_methods_interleave_and_max_parallel_bounds_them() -> None:
    async def gated(max_parallel: int) -> tuple[list[Any], list[Any]]:
        async with await IsolateWorker.spawn(Recorder, max_parallel=max_parallel) as recorder:
            port: ReceivePort[Any] = ReceivePort()
            held = recorder.gate(port.send_port)
            release: SendPort[Any] = await anext(port)
            behind = recorder.record("b")
            if max_parallel > 1:
                await behind  # runs while the gate waits (it would hang otherwise)
            release.send("go")
            at_release = await held
            port.close()
            return at_release, await behind

    assert run(gated(4)) == (["gate", "b"], ["gate", "b"])
    assert run(gated(1)) == (["gate"], ["gate", "b"])  # b waited for the gate


@pytest.mark.parametrize("how", ["kill", "crash"])
def test_a_killed_worker_fails_pending_and_later_calls_and_fires_exit_listeners(how: str) -> None:
    """Killed (``Isolate.kill``) or crashed (its process SIGKILLed) with a call running, one
    queued and a stream open."""

    async def main() -> list[Any]:
        recorder = await IsolateWorker.spawn(Recorder, max_parallel=1)
        pid = await recorder.pid()
        exits: ReceivePort[Any] = ReceivePort()
        recorder.isolate.add_on_exit_listener(exits.send_port, "gone")
        port: ReceivePort[Any] = ReceivePort()
        held = recorder.gate(port.send_port)
        await anext(port)  # running, and the next call queued behind it
        queued = recorder.record("never")
        stream = recorder.count()
        if how == "kill":
            recorder.isolate.kill(priority=Isolate.IMMEDIATE)
        else:
            os.kill(pid, signal.SIGKILL)
        outcomes = []
        for pending in (held, queued):
            with pytest.raises(RemoteError, match="ended before answering"):
                await pending
            outcomes.append("failed")
        with pytest.raises(RemoteError):
            [item async for item in stream]
        outcomes.append(await anext(exits))
        with pytest.raises(RemoteError, match="has ended"):
            await recorder.add(1)
        port.close()
        exits.close()
        return outcomes

    assert run(main()) == ["failed", "failed", "gone"]


def test_close_lets_calls_in_flight_finish_then_ends_the_worker() -> None:
    async def main() -> list[Any]:
        recorder = await IsolateWorker.spawn(Recorder)
        exits: ReceivePort[Any] = ReceivePort()
        recorder.isolate.add_on_exit_listener(exits.send_port, "ended")
        in_flight = [recorder.add_later(1) for _ in range(20)] + [
            recorder.add(1) for _ in range(20)
        ]
        await recorder.aclose()
        answers = [await future for future in in_flight]
        with pytest.raises(RemoteError, match="closed"):
            await recorder.add(1)
        ended = await anext(exits)
        exits.close()
        await recorder.aclose()  # idempotent
        return [sorted(answers)[-1], ended]

    assert run(main()) == [40, "ended"]


def test_close_blocks_in_a_script_and_refuses_inside_a_loop() -> None:
    recorder = IsolateWorker.spawn(Recorder).result(60)
    pending = recorder.add(5)

    async def inside() -> None:
        with pytest.raises(RuntimeError, match="aclose"):
            recorder.close()

    run(inside())
    recorder.close()
    assert pending.result(30) == 5


def test_spawn_failures() -> None:
    with pytest.raises(
        IsolateSpawnException, match="Broken raised ValueError: cannot build"
    ) as caught:
        IsolateWorker.spawn(worker_entries.Broken).result(60)
    assert isinstance(caught.value.__cause__, ValueError)
    with pytest.raises(IsolateSpawnException, match="argument 0"):
        IsolateWorker.spawn(Recorder, threading.Lock())
    with pytest.raises(IsolateSpawnException, match="not callable"):
        IsolateWorker.spawn(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_parallel"):
        IsolateWorker.spawn(Recorder, max_parallel=0)
    with pytest.raises(TypeError, match="bogus"):
        IsolateWorker.spawn(Recorder, bogus=1)


def test_factories_lambdas_and_partials() -> None:
    stepping = IsolateWorker.spawn(functools.partial(Recorder, 100, step=7)).result(60)
    with stepping:
        assert stepping.add().result(30) == 107

    async def built() -> Recorder:
        return Recorder(1)

    with IsolateWorker.spawn(built, debug_name="built-async").result(60) as from_async:
        assert from_async.isolate.debug_name == "built-async"
        assert from_async.add(1).result(30) == 2


def test_call_reaches_methods_named_like_the_handles_own(worker: IsolateWorker) -> None:
    assert worker.call("close").result(30) == "the object's close"
    total = worker.get("total").result(30)
    assert worker.call("add", 1, times=2).result(30) == total + 2
    assert list(worker.call("count", 3)) == [0, 1, 2]
    with pytest.raises(AttributeError, match="'Recorder' worker has no attribute 'nope'"):
        worker.call("nope")


def test_a_handle_pickles_and_compares(worker: IsolateWorker) -> None:
    copy = pickle.loads(pickle.dumps(worker))
    assert copy == worker and hash(copy) == hash(worker)
    assert copy.add(0).result(30) == worker.get("total").result(30)
    assert "Recorder" in repr(copy)


@pytest.mark.parametrize("seed", range(6))
def test_random_sweep_of_callers_keeps_each_callers_start_order(seed: int) -> None:
    """Main and two isolates call one worker at once, sync and async steps at random; every
    answer is right and each caller's calls started in the order it made them."""
    count = 40

    async def main() -> tuple[dict[str, list[Any]], list[Any]]:
        async with await IsolateWorker.spawn(Steps, max_parallel=1 + seed % 3) as steps:
            port: ReceivePort[Any] = ReceivePort()
            callers = ["isolate-1", "isolate-2"]
            isolates = [
                await Isolate.spawn(
                    worker_entries.calling_isolate, (port.send_port, steps, name, seed, count)
                )
                for name in callers
            ]
            ours = await worker_entries.make_calls(steps, "main", seed, count)
            answers = {"main": ours}
            for _ in callers:
                got = await anext(port)
                answers[got[0][0]] = got
            log = await steps.get("log")
            port.close()
            for isolate in isolates:
                isolate.kill()
            return answers, log

    answers, log = run(main())
    for caller in ("main", "isolate-1", "isolate-2"):
        assert answers[caller] == [(caller, i * i) for i in range(count)]
        assert [i for who, i in log if who == caller] == list(range(count))


def test_status_lists_workers_with_their_calls_pending() -> None:
    async def main() -> dict[str, Any]:
        recorder = await IsolateWorker.spawn(Recorder, debug_name="status-worker")
        port: ReceivePort[Any] = ReceivePort()
        held = [recorder.gate(port.send_port) for _ in range(3)]
        gates = [await anext(port) for _ in range(3)]
        await recorder.add(1)
        supervisor = current().sender.supervisor()
        status: dict[str, Any] = await supervisor.status.remote()
        for gate in gates:
            gate.send("go")
        await asyncio.gather(*held)
        port.close()
        await recorder.aclose()
        return status

    status = run(main())
    (listed,) = [w for w in status["workers"] if w["name"] == "status-worker"]
    assert (listed["class"], listed["pending"], listed["running"]) == ("Recorder", 3, 3)
    assert listed["completed"] == 1
    table = render([{**status, "main": {**status["main"], "node_ip": ""}}])
    row = next(
        line for line in table.splitlines() if "status-worker" in line and "Recorder" in line
    )
    assert row.split()[-4:] == ["3", "3", "1", "0"]


@pytest.mark.parametrize("seed", range(3))
def test_threads_making_a_processs_first_calls_at_once_all_get_answers(seed: int) -> None:
    """The first calls of a process to a worker, from 8 threads at once: none overtakes
    the process's introduction (its answer would have nowhere to go)."""
    with IsolateWorker.spawn(Steps).result(60) as steps:
        start = threading.Barrier(8)

        def caller(name: str) -> list[Any]:
            start.wait()
            futures = [steps.sync_step(name, i) for i in range(20 + seed)]
            return [tuple(future.result(60)) for future in futures]

        with concurrent.futures.ThreadPoolExecutor(8) as threads:
            names = [f"thread-{seed}-{n}" for n in range(8)]
            answers = dict(zip(names, threads.map(caller, names), strict=True))
    for name, got in answers.items():
        assert got == [(name, i * i) for i in range(20 + seed)]
