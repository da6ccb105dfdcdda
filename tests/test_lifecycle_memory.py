"""What the driver and the supervisor remember must not grow with isolates that have ended."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
import ray

from rayisolates import Isolate, ReceivePort
from rayisolates._context.context import current
from rayisolates._runtime.main import MainRuntime

from . import entries
from .support import resident_megabytes, run


def remembered() -> dict[str, int]:
    """Per-isolate state in the driver and the supervisor (constant parts excluded)."""
    context = current()
    runtime = context.runtime
    assert isinstance(runtime, MainRuntime)
    supervisor = ray.get(context.sender.supervisor().sizes.remote())
    return {
        "driver polls": runtime.links.watched(),
        "driver outbox channels": runtime.sender.outbox.destinations(),
        "driver control channels": runtime.sender.controls.destinations(),
        "supervisor isolates": supervisor["isolates"],
        "supervisor control senders": supervisor["control_senders"],
        "supervisor outbox channels": supervisor["outbox_destinations"],
        "supervisor forwarding channels": supervisor["forwarding_destinations"],
    }


async def spawn_and_end(count: int, wave: int = 20) -> None:
    """Isolates that talk both ways with the main isolate, then end; in waves."""
    port: ReceivePort[Any] = ReceivePort("lifecycle")
    for start in range(0, count, wave):
        size = min(wave, count - start)
        isolates = await asyncio.gather(
            *(Isolate.spawn(entries.echo, port.send_port) for _ in range(size))
        )
        workers = [await anext(port) for _ in isolates]
        for isolate, worker in zip(isolates, workers, strict=True):
            isolate.add_on_exit_listener(port.send_port, "ended")
            worker.send("ping")
            worker.send(None)  # echo answers "bye" through Isolate.exit
        answers = [await anext(port) for _ in range(3 * size)]
        assert sorted(answers) == ["bye"] * size + ["ended"] * size + ["ping"] * size
    port.close()


@pytest.mark.timeout(300)
def test_isolates_that_ended_are_forgotten() -> None:
    run(spawn_and_end(2), timeout=120)  # what stays: the channel to the supervisor
    baseline = remembered()
    run(spawn_and_end(24), timeout=280)
    # The supervisor forgets an isolate as its exit notice goes out; the driver as
    # the isolate's link says it has ended, which may come a moment later.
    deadline = time.monotonic() + 30
    while (after := remembered()) != baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert after == baseline, (baseline, after)


def churn_raw_actors(owner: Any, count: int, wave: int = 20) -> None:
    """Ray's floor for the same pattern: an owner actor creates plain actors that call it
    back once, the driver calls each once, the owner kills them; in waves."""
    for start in range(0, count, wave):
        children = ray.get(owner.make.remote(min(wave, count - start)))
        ray.get([child.hello.remote() for child in children])
        del children
        ray.get(owner.kill.remote())


# What the driver and the supervisor may grow by, per isolate spawned and ended, once
# warmed up: twice what was measured over 10,000 isolates (5.6 KB in the driver, 5.5 KB
# in the supervisor; Ray's own floor for plain actors is of the same order). A leak of
# any per-isolate record (an actor handle keeps some 26 KB of Ray's) breaks it.
GROWTH_PER_ISOLATE_KB = 12.0


@pytest.mark.soak
@pytest.mark.timeout(14_400)
def test_memory_over_many_isolates() -> None:
    """Resident memory of the driver and the supervisor while ``SOAK_SPAWNS`` isolates
    are spawned and ended stays within ``GROWTH_PER_ISOLATE_KB`` each, and what they
    remember per isolate returns to where it was; Ray's own floor for plain actors is
    measured in the same run, for the record."""
    count = int(os.environ.get("SOAK_SPAWNS", "10000"))
    raw_count = min(count, 1000)
    supervisor = current().sender.supervisor()
    supervisor_pid = ray.get(supervisor.__ray_call__.remote(lambda self: os.getpid()))
    owner = entries.RawOwner.remote()  # type: ignore[attr-defined]
    owner_pid = ray.get(owner.pid.remote())
    run(spawn_and_end(200), timeout=600)  # warmed up: imports, connections, caches
    churn_raw_actors(owner, 100)
    baseline = remembered()

    def sample() -> tuple[float, float]:
        return resident_megabytes(), resident_megabytes(supervisor_pid)

    before = sample()
    started = time.perf_counter()
    for done in range(0, count, 1000):
        run(spawn_and_end(min(1000, count - done)), timeout=3_600)
        now = sample()
        print(
            f"SOAK {done + min(1000, count - done)} isolates, "
            f"{time.perf_counter() - started:.0f} s: driver {now[0]:.1f} MB, "
            f"supervisor {now[1]:.1f} MB",
            flush=True,
        )
    elapsed = time.perf_counter() - started
    after = sample()
    raw_before = resident_megabytes(), resident_megabytes(owner_pid)
    churn_raw_actors(owner, raw_count)
    raw_after = resident_megabytes(), resident_megabytes(owner_pid)
    ray.kill(owner)

    def per_one(first: float, last: float, number: int) -> str:
        return f"{(last - first) * 1024 / number:.1f} KB each"

    print(
        f"SOAK {count} isolates spawned and ended in {elapsed:.0f} s; "
        f"driver RSS {before[0]:.1f} -> {after[0]:.1f} MB ({per_one(before[0], after[0], count)}), "
        f"supervisor RSS {before[1]:.1f} -> {after[1]:.1f} MB "
        f"({per_one(before[1], after[1], count)}); remembered {remembered()}\n"
        f"SOAK Ray's floor, {raw_count} plain actors: owner actor RSS {raw_before[1]:.1f} -> "
        f"{raw_after[1]:.1f} MB ({per_one(raw_before[1], raw_after[1], raw_count)}), "
        f"driver {raw_before[0]:.1f} -> {raw_after[0]:.1f} MB "
        f"({per_one(raw_before[0], raw_after[0], raw_count)})"
    )
    for where, first, last in (
        ("driver", before[0], after[0]),
        ("supervisor", before[1], after[1]),
    ):
        grown = (last - first) * 1024 / count
        assert grown <= GROWTH_PER_ISOLATE_KB, f"the {where} grew {grown:.1f} KB per isolate"
    deadline = time.monotonic() + 30
    while (now_remembered := remembered()) != baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert now_remembered == baseline, (baseline, now_remembered)
