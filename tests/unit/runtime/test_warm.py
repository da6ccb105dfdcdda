"""The supervisor's warm hosts, driven without Ray: hosts start, fail, are taken by
spawns, leased to the driver, started by it or end first, in random orders.

Each seed checks that the places taken (waiting + starting + leased) never
exceed the pool's size and stay at it after every event but a failed start:
no order of events leaves the pool short for good (an isolate that ended
before the supervisor heard the driver started it once did).
"""

from __future__ import annotations

import os
import random

import pytest

from rayisolates._runtime.warm import WarmHosts

SEEDS = int(os.environ.get("WARM_SEEDS", "400"))
EVENTS = ["up", "up", "spawn", "lease", "started", "ended", "ended-first"]


class _Supervisor:
    """What the supervisor does with the counts: start hosts, lease them, hear back."""

    def __init__(self, rng: random.Random, size: int, failures: bool) -> None:
        self.rng = rng
        self.failures = failures
        self.warm: WarmHosts[str, str] = WarmHosts(size)
        self.names = iter(range(10**6))
        self.starting: list[str] = []  # hosts being started, as the supervisor's tasks
        self.leased: list[str] = []  # held by the driver
        self.running: list[str] = []  # leased hosts the driver started
        self.start(self.warm.to_start())  # fill_pool

    def start(self, count: int) -> None:
        self.starting.extend(f"isolate-{next(self.names)}" for _ in range(count))

    def pick(self, hosts: list[str]) -> str:
        return hosts.pop(self.rng.randrange(len(hosts)))

    def act(self, event: str) -> bool | None:
        """One event: whether it was a failed start (``None``: it could not happen now)."""
        if event == "up" and self.starting:
            host = self.pick(self.starting)
            if self.failures and self.rng.random() < 0.2:
                self.warm.failed()
                return True
            self.start(self.warm.started(host))
        elif event == "spawn":
            self.start(self.warm.take()[1])
        elif event == "lease" and self.warm.waiting:
            leased = self.warm.take_for_lease()
            assert leased is not None
            self.start(self.warm.lease(leased, f"record of {leased}"))
            self.leased.append(leased)
        elif event == "started" and self.leased:
            host = self.pick(self.leased)
            record, count = self.warm.leased_started(host)
            assert record == f"record of {host}"
            self.start(count)
            self.running.append(host)
        elif event == "ended-first" and self.leased:  # it ended before Started came
            host = self.pick(self.leased)
            self.start(self.warm.ended(host))
            record, count = self.warm.leased_started(host)  # Started comes after all
            assert record is None
            self.start(count)
        elif event == "ended" and self.running:
            self.start(self.warm.ended(self.pick(self.running)))
        else:
            return None
        return False

    def taken(self) -> int:
        assert self.warm.starting == len(self.starting), "the count of hosts starting drifted"
        return len(self.warm.waiting) + self.warm.starting + len(self.warm.leased)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_events_keep_the_pool_full(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.randrange(0, 6)
    supervisor = _Supervisor(rng, size, failures=rng.random() < 0.3)
    short = 0  # places left empty by failed starts since the last other event
    for _ in range(rng.randrange(1, 200)):
        failed = supervisor.act(rng.choice(EVENTS))
        if failed is None:
            continue
        short = short + 1 if failed else 0  # every other event starts what is missing
        assert supervisor.taken() == size - short
    assert sorted(supervisor.warm.leased) == sorted(supervisor.leased)
    assert supervisor.warm.ready == len(supervisor.warm.waiting) + len(supervisor.leased)
