"""What the driver and the supervisor remember must not grow with isolates that have ended."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
import ray

from rayisolates import Isolate, ReceivePort
from rayisolates._context import current
from rayisolates._main import MainRuntime

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


@pytest.mark.soak
@pytest.mark.timeout(14_400)
def test_memory_over_many_isolates() -> None:
    count = int(os.environ.get("SOAK_SPAWNS", "10000"))
    supervisor = current().sender.supervisor()
    supervisor_pid = ray.get(supervisor.__ray_call__.remote(lambda self: os.getpid()))
    run(spawn_and_end(200), timeout=600)  # warmed up: imports, connections, caches
    before = resident_megabytes(), resident_megabytes(supervisor_pid)
    started = time.perf_counter()
    run(spawn_and_end(count), timeout=14_000)
    after = resident_megabytes(), resident_megabytes(supervisor_pid)
    print(
        f"SOAK {count} isolates spawned and ended in {time.perf_counter() - started:.0f} s; "
        f"driver RSS {before[0]:.1f} -> {after[0]:.1f} MB, "
        f"supervisor RSS {before[1]:.1f} -> {after[1]:.1f} MB; remembered {remembered()}"
    )
