"""Chaos: isolates talking all-to-all while some are SIGKILLed at random.

For every pair of survivors nothing is lost, repeated or reordered; from a
killed sender a survivor gets a clean prefix; every isolate's exit listener
fires exactly once. ``make soak`` runs the long version (``SOAK_ISOLATES``,
``SOAK_ROUNDS``, ``SOAK_KILLS``, ``SOAK_SEED``).
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import ray

from rayisolates import Isolate, ReceivePort, SendPort
from rayisolates._context.context import current

from . import chaos_entries
from .support import placed, resident_megabytes, run

MAIN = "main"
Counts = dict[str, dict[str, int]]  # sender -> target -> messages sent


@dataclass
class Chaos:
    isolates: int
    rounds: int
    kills: int
    seed: int
    wait: float = 120.0  # seconds any one step may take
    nodes: tuple[str, ...] = ()  # custom resources of the nodes to spread members over
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Member:
    isolate: Isolate
    pid: int
    commands: SendPort[Any]
    inbox: SendPort[Any]


class MainInbox:
    """The main isolate's share of the traffic, checked as it arrives."""

    def __init__(self) -> None:
        self.port: ReceivePort[tuple[str, int]] = ReceivePort("chaos-main")
        self.received: collections.Counter[str] = collections.Counter()
        self.violations: list[str] = []
        self.expected: dict[str, int] = {}
        self.complete = asyncio.Event()
        self.port.listen(self._arrived)

    def _arrived(self, message: tuple[str, int]) -> None:
        sender, n = message
        if n != self.received[sender]:
            self.violations.append(f"{sender} -> main: got {n}, not {self.received[sender]}")
        self.received[sender] = max(self.received[sender], n + 1)
        self._check()

    def _check(self) -> None:
        if self.expected and all(self.received[s] >= n for s, n in self.expected.items()):
            self.complete.set()

    async def expect(self, expected: dict[str, int], wait: float) -> None:
        self.expected = expected
        self._check()
        await asyncio.wait_for(self.complete.wait(), wait)


async def spawn_members(
    count: int, control: ReceivePort[Any], exits: ReceivePort[Any], nodes: tuple[str, ...] = ()
) -> dict[str, Member]:
    """``count`` members, placed on ``nodes`` (custom resources) in turn, if given."""
    names = [f"c{i}" for i in range(count)]
    isolates: dict[str, Isolate] = {}
    for start in range(0, count, 20):  # in waves: Ray starts worker processes gradually
        wave = names[start : start + 20]
        spawned = await asyncio.gather(
            *(
                Isolate.spawn(
                    chaos_entries.member,
                    (control.send_port, name),
                    debug_name=name,
                    **placed(nodes, names.index(name)),
                )
                for name in wave
            )
        )
        for name, isolate in zip(wave, spawned, strict=True):
            isolate.add_on_exit_listener(exits.send_port, name)
            isolates[name] = isolate
    members = {}
    for _ in names:
        _, name, pid, commands, inbox = await asyncio.wait_for(anext(control), 120)
        members[name] = Member(isolates[name], pid, commands, inbox)
    return members


async def traffic(
    members: dict[str, Member], main: MainInbox, config: Chaos, rng: random.Random
) -> tuple[set[str], dict[str, int]]:
    """Start everyone sending; send from the main isolate too, killing as we go."""
    targets = {name: member.inbox for name, member in members.items()}
    targets[MAIN] = main.port.send_port
    for member in members.values():
        member.commands.send(("go", targets, config.rounds))
    killed = set(rng.sample(sorted(members), config.kills))
    victims = sorted(killed)
    sent: collections.Counter[str] = collections.Counter()
    for round_number in range(config.rounds):
        for name, member in members.items():
            member.inbox.send((MAIN, sent[name]))
            sent[name] += 1
        if victims and rng.random() < 2 * config.kills / config.rounds:
            os.kill(members[victims.pop()].pid, signal.SIGKILL)
        if round_number % 5 == 0:
            await asyncio.sleep(0)
    for victim in victims:
        os.kill(members[victim].pid, signal.SIGKILL)
    return killed, dict(sent)


async def diagnosis(
    members: dict[str, Member], waiting: list[str], control: ReceivePort[Any], sent: Counts
) -> str:
    """What the members still waited on are missing, from what they say has arrived."""
    for name in waiting:
        members[name].commands.send(("dump",))
    lines = []
    for _ in waiting:
        try:
            message = await asyncio.wait_for(anext(control), 30)
        except TimeoutError:
            lines.append("no answer to dump")
            break
        if message[0] == "dump":
            _, name, received, violations = message
            missing = {
                sender: f"{received.get(sender, 0)} of {counts[name]}"
                for sender, counts in sent.items()
                if received.get(sender, 0) != counts[name]
            }
            lines.append(f"{name}: missing {missing}, violations {violations[:3]}")
    return "; ".join(lines)


async def check_survivors(
    members: dict[str, Member],
    survivors: list[str],
    control: ReceivePort[Any],
    main: MainInbox,
    sent: Counts,
    wait: float,
) -> None:
    """Each survivor, and the main isolate, got all that survivors sent it, once, in order."""
    while len(sent) < len(survivors) + 1:
        message = await asyncio.wait_for(anext(control), wait)
        if message[0] == "sent" and message[1] in survivors:
            sent[message[1]] = message[2]
    for name in survivors:
        members[name].commands.send(("expect", {s: counts[name] for s, counts in sent.items()}))
    reports: dict[str, tuple[dict[str, int], list[str]]] = {}
    while len(reports) < len(survivors):
        try:
            message = await asyncio.wait_for(anext(control), wait)
        except TimeoutError:
            waiting = [name for name in survivors if name not in reports]
            raise AssertionError(await diagnosis(members, waiting, control, sent)) from None
        if message[0] == "report":
            reports[message[1]] = (message[2], message[3])
    for name, (received, violations) in reports.items():
        assert violations == [], violations[:5]
        for sender, counts in sent.items():
            assert received.get(sender, 0) == counts[name], f"{sender} -> {name}"
    await main.expect({s: counts[MAIN] for s, counts in sent.items() if s != MAIN}, wait)
    assert main.violations == [], main.violations[:5]


async def check_exit_notices(
    members: dict[str, Member], survivors: list[str], exits: ReceivePort[Any]
) -> None:
    """Every isolate's exit listener fires exactly once, killed or not."""
    for name in survivors:
        members[name].commands.send(("stop",))
    ended: collections.Counter[str] = collections.Counter()
    while sum(ended.values()) < len(members):
        ended[await asyncio.wait_for(anext(exits), 120)] += 1
    marker = next(iter(members.values())).isolate
    marker.add_on_exit_listener(exits.send_port, "late")  # after any notice already sent
    while (name := await asyncio.wait_for(anext(exits), 60)) != "late":
        ended[name] += 1
    assert set(ended) == set(members) and set(ended.values()) == {1}, ended


async def chaos(config: Chaos) -> None:
    started = time.perf_counter()
    control: ReceivePort[Any] = ReceivePort("chaos-control")
    exits: ReceivePort[Any] = ReceivePort("chaos-exits")
    main = MainInbox()
    try:
        members = await spawn_members(config.isolates, control, exits, config.nodes)
        config.figures["spawn_seconds"] = round(time.perf_counter() - started, 1)
        killed, main_sent = await traffic(members, main, config, random.Random(config.seed))
        survivors = [name for name in members if name not in killed]
        sent: Counts = {MAIN: main_sent}
        await check_survivors(members, survivors, control, main, sent, config.wait)
        config.figures["traffic_seconds"] = round(time.perf_counter() - started, 1)
        await check_exit_notices(members, survivors, exits)
        config.figures.update(
            isolates=len(members),
            killed=len(killed),
            messages_between_survivors=sum(sum(c.values()) for c in sent.values()),
            messages_sent_at_most=(config.isolates + 1) ** 2 * config.rounds,
            seconds=round(time.perf_counter() - started, 1),
        )
    finally:
        for port in (control, exits, main.port):
            port.close()


THREE_NODES = ("node_head", "node_a", "node_b")  # the session cluster's (conftest.py)


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("seed", "nodes"), [(1, ()), (2, ()), (3, THREE_NODES)], ids=["1", "2", "3-across-nodes"]
)
def test_all_to_all_traffic_survives_random_kills(seed: int, nodes: tuple[str, ...]) -> None:
    """On the driver's node, and spread over three nodes (direct channels across them)."""
    config = Chaos(isolates=8, rounds=1500, kills=3, seed=seed, nodes=nodes)
    run(chaos(config), timeout=230)
    print(config.figures)


@pytest.mark.soak
@pytest.mark.timeout(7200)
def test_soak() -> None:
    config = Chaos(
        isolates=int(os.environ.get("SOAK_ISOLATES", "200")),
        rounds=int(os.environ.get("SOAK_ROUNDS", "28")),
        kills=int(os.environ.get("SOAK_KILLS", "20")),
        seed=int(os.environ.get("SOAK_SEED", "7")),
        wait=900.0,
    )
    supervisor = current().sender.supervisor()
    supervisor_pid = ray.get(supervisor.__ray_call__.remote(lambda self: os.getpid()))
    before = resident_megabytes(), resident_megabytes(supervisor_pid)
    run(chaos(config), timeout=7100)
    after = resident_megabytes(), resident_megabytes(supervisor_pid)
    config.figures["driver_rss_mb"] = (round(before[0], 1), round(after[0], 1))
    config.figures["supervisor_rss_mb"] = (round(before[1], 1), round(after[1], 1))
    print("SOAK", config.figures)
