"""The starter on a real event loop, without Ray: random sync and async calls.

Each seed checks what a worker and a pool member promise: calls start in
the order they arrived, never more than ``max_parallel`` run at once, an
async call's body begins before the next call starts, every call is
finished once, and ``ended`` comes once everything has finished after
``close()``.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import pytest

from rayisolates._schedule import Schedule, Starter

SEEDS = int(os.environ.get("STARTER_SEEDS", "300"))


class _Run:
    """What the starter drives: a record of starts, bodies begun, finishes."""

    def __init__(self, rng: random.Random, max_parallel: int) -> None:
        self.rng = rng
        self.max_parallel = max_parallel
        self.events: list[tuple[str, int]] = []
        self.running: set[int] = set()
        self.finished: dict[int, bool] = {}
        self.ended = 0
        self.starter: Starter[int] = Starter(
            Schedule(max_parallel), self.run, self.finish, self.end
        )

    def run(self, call: int) -> bool | Any:
        self.events.append(("start", call))
        self.running.add(call)
        assert len(self.running) <= self.max_parallel
        kind = self.rng.choice(["sync", "sync-fail", "async", "async-fail", "async-base"])
        if kind.startswith("sync"):
            return self._done(call, kind == "sync")
        return self._body(call, kind, self.rng.randrange(4))

    async def _body(self, call: int, kind: str, turns: int) -> bool:
        self.events.append(("body", call))
        for _ in range(turns):
            await asyncio.sleep(0)
        if kind == "async-fail":
            raise ValueError(call)
        if kind == "async-base":
            raise asyncio.CancelledError
        return True

    def _done(self, call: int, ok: bool) -> bool:
        assert call not in self.finished, f"call {call} finished twice"
        self.running.discard(call)
        self.finished[call] = ok
        return ok

    def finish(self, call: int, task: asyncio.Future[Any]) -> bool:
        ok = not task.cancelled() and task.exception() is None
        return self._done(call, ok)

    def end(self) -> None:
        assert not self.running and self.starter.schedule.ended
        self.ended += 1


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_calls_start_in_order_one_body_at_a_time(seed: int) -> None:
    rng = random.Random(seed)
    run = _Run(rng, rng.choice([1, 1, 2, 3, 8]))
    total = rng.randrange(1, 40)
    close_after = rng.randrange(total + 1)

    async def main() -> None:
        for call in range(total):
            if call == close_after:
                run.starter.close()
                break
            run.starter.arrived(call)
            for _ in range(rng.choice([0, 0, 1, 3])):
                await asyncio.sleep(0)
        else:
            run.starter.close()
        for _ in range(1000):
            if run.ended:
                break
            await asyncio.sleep(0)

    asyncio.run(main())
    arrived = min(total, close_after)
    starts = [call for what, call in run.events if what == "start"]
    assert starts == list(range(arrived)), "calls started out of order"
    for what, call in run.events:  # an async call's body begins before the next call starts
        if what == "start" and call > 0 and not isinstance(run.finished.get(call - 1), bool):
            pytest.fail(f"call {call - 1} never finished")
    for position, (what, call) in enumerate(run.events):
        if what == "body":
            later_starts = [c for w, c in run.events[:position] if w == "start" and c > call]
            assert not later_starts, f"call {later_starts[0]} started before {call}'s body"
    assert sorted(run.finished) == list(range(arrived))
    assert run.ended >= 1
    schedule = run.starter.schedule
    assert schedule.completed + schedule.failed == arrived
    assert schedule.failed == sum(not ok for ok in run.finished.values())
    assert not run.starter.tasks
