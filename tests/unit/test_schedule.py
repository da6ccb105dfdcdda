"""The worker's schedule, driven without Ray: calls arrive, run and finish at random.

Each seed checks what a worker promises: calls start in the order they
arrived, never more than ``max_parallel`` run at once, every call starts
once, and a closed worker ends only once everything has finished.
"""

from __future__ import annotations

import os
import random

import pytest

from rayisolates._schedule import Schedule

SEEDS = int(os.environ.get("WORKER_SCHEDULE_SEEDS", "300"))


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_calls_start_in_order_within_the_bound(seed: int) -> None:
    rng = random.Random(seed)
    max_parallel = rng.choice([1, 1, 2, 3, 8])
    schedule: Schedule[int] = Schedule(max_parallel)
    arrived = started = 0
    running: list[int] = []
    order: list[int] = []
    total = rng.randrange(1, 60)
    close_after = rng.randrange(total + 1)
    outcomes = {"ok": 0, "failed": 0}
    while len(order) < total or running:
        can_arrive = arrived < total
        if can_arrive and (not running or rng.random() < 0.5):
            starting = schedule.arrived(arrived)
            arrived += 1
            if arrived == close_after:
                schedule.close()
        else:
            assert running, "a call waits with nothing running"
            ok = rng.random() < 0.8
            outcomes["ok" if ok else "failed"] += 1
            running.pop(rng.randrange(len(running)))
            starting = schedule.finished(ok)
        order.extend(starting)
        running.extend(starting)
        started += len(starting)
        assert len(running) == schedule.running <= max_parallel
        assert schedule.stats()["pending"] == arrived - outcomes["ok"] - outcomes["failed"]
        assert not schedule.ended or (schedule.closing and not running)
    assert order == list(range(total))
    assert (schedule.completed, schedule.failed) == (outcomes["ok"], outcomes["failed"])
    schedule.close()
    assert schedule.ended


def test_a_waiting_call_holds_back_the_calls_after_it() -> None:
    schedule: Schedule[str] = Schedule(1)
    assert schedule.arrived("slow") == ["slow"]
    assert schedule.arrived("quick") == []  # not before "slow" has finished
    assert schedule.arrived("next") == []
    assert schedule.finished(True) == ["quick"]
    assert schedule.finished(False) == ["next"]
    schedule.close()
    assert not schedule.ended
    assert schedule.finished(True) == []
    assert schedule.ended
    assert schedule.stats() == {"pending": 0, "running": 0, "completed": 2, "failed": 1}
