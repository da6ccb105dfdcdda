"""Chaos: isolates talking all-to-all while some are SIGKILLed at random.

For every pair of survivors nothing is lost, repeated or reordered; from a
killed sender a survivor gets a clean prefix; every isolate's exit listener
fires exactly once. ``make soak`` runs the long version (``SOAK_ISOLATES``,
``SOAK_ROUNDS``, ``SOAK_KILLS``).
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

from rayisolates import Isolate, ReceivePort, SendPort

from . import chaos_entries
from .support import run

MAIN = "main"


@dataclass
class Chaos:
    isolates: int
    rounds: int
    kills: int
    seed: int
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Member:
    isolate: Isolate
    pid: int
    commands: SendPort[Any]
    inbox: SendPort[Any]


async def spawn_members(
    count: int, control: ReceivePort[Any], exits: ReceivePort[Any]
) -> dict[str, Member]:
    names = [f"c{i}" for i in range(count)]
    isolates: dict[str, Isolate] = {}
    for start in range(0, count, 20):  # in waves: Ray starts worker processes gradually
        batch = names[start : start + 20]
        spawned = await asyncio.gather(
            *(
                Isolate.spawn(
                    chaos_entries.member,
                    (control.send_port, name),
                    on_exit=None,
                    debug_name=name,
                )
                for name in batch
            )
        )
        for name, isolate in zip(batch, spawned, strict=True):
            isolate.add_on_exit_listener(exits.send_port, name)
            isolates[name] = isolate
    members = {}
    for _ in names:
        _, name, pid, commands, inbox = await anext(control)
        members[name] = Member(isolates[name], pid, commands, inbox)
    return members


async def chaos(config: Chaos) -> None:
    rng = random.Random(config.seed)
    started = time.perf_counter()
    control: ReceivePort[Any] = ReceivePort("chaos-control")
    exits: ReceivePort[Any] = ReceivePort("chaos-exits")
    main_inbox: ReceivePort[tuple[str, int]] = ReceivePort("chaos-main")
    main_received: collections.Counter[str] = collections.Counter()
    main_violations: list[str] = []
    expected_main: dict[str, int] = {}
    complete = asyncio.Event()

    def check_main() -> None:
        if expected_main and all(main_received[s] >= n for s, n in expected_main.items()):
            complete.set()

    def arrived(message: tuple[str, int]) -> None:
        sender, n = message
        if n != main_received[sender]:
            main_violations.append(f"{sender} -> main: got {n}, expected {main_received[sender]}")
        main_received[sender] = max(main_received[sender], n + 1)
        check_main()

    main_inbox.listen(arrived)
    members = await spawn_members(config.isolates, control, exits)
    config.figures["spawned_seconds"] = time.perf_counter() - started
    targets = {name: member.inbox for name, member in members.items()}
    targets[MAIN] = main_inbox.send_port
    for member in members.values():
        member.commands.send(("go", targets, config.rounds))
    # The main isolate sends too, while isolates die around it.
    killed = set(rng.sample(sorted(members), config.kills))
    victims = sorted(killed)
    main_sent: collections.Counter[str] = collections.Counter()
    for round_number in range(config.rounds):
        for name, member in members.items():
            member.inbox.send((MAIN, main_sent[name]))
            main_sent[name] += 1
        if victims and rng.random() < 2 * config.kills / config.rounds:
            os.kill(members[victims.pop()].pid, signal.SIGKILL)
        if round_number % 5 == 0:
            await asyncio.sleep(0)
    for victim in victims:
        os.kill(members[victim].pid, signal.SIGKILL)
    survivors = [name for name in members if name not in killed]

    # What every survivor sent, and so what each survivor must have received.
    sent: dict[str, dict[str, int]] = {MAIN: dict(main_sent)}
    while len(sent) < len(survivors) + 1:
        message = await asyncio.wait_for(anext(control), 120)
        if message[0] == "sent" and message[1] not in killed:
            sent[message[1]] = message[2]
    for name in survivors:
        members[name].commands.send(("expect", {s: counts[name] for s, counts in sent.items()}))
    reports: dict[str, tuple[dict[str, int], list[str]]] = {}
    while len(reports) < len(survivors):
        message = await asyncio.wait_for(anext(control), 120)
        if message[0] == "report":
            _, name, received, violations = message
            reports[name] = (received, violations)
    for name, (received, violations) in reports.items():
        assert violations == [], violations[:5]
        for sender, counts in sent.items():
            assert received.get(sender, 0) == counts[name], f"{sender} -> {name}"
    complete.clear()
    expected_main.update({s: counts[MAIN] for s, counts in sent.items() if s != MAIN})
    check_main()
    await asyncio.wait_for(complete.wait(), 60)
    assert main_violations == [], main_violations[:5]
    config.figures["sent_seconds"] = time.perf_counter() - started

    # Every isolate's exit listener fires exactly once, killed or not.
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
    config.figures.update(
        messages=sum(sum(counts.values()) for counts in sent.values()),
        isolates=len(members),
        killed=len(killed),
        seconds=time.perf_counter() - started,
    )
    for port in (control, exits, main_inbox):
        port.close()


@pytest.mark.timeout(240)
def test_all_to_all_traffic_survives_random_kills() -> None:
    config = Chaos(isolates=8, rounds=400, kills=3, seed=1)
    run(chaos(config), timeout=230)
    print(config.figures)


@pytest.mark.soak
@pytest.mark.timeout(7200)
def test_soak() -> None:
    config = Chaos(
        isolates=int(os.environ.get("SOAK_ISOLATES", "200")),
        rounds=int(os.environ.get("SOAK_ROUNDS", "25")),
        kills=int(os.environ.get("SOAK_KILLS", "20")),
        seed=int(os.environ.get("SOAK_SEED", "7")),
    )
    run(chaos(config), timeout=7100)
    print("SOAK", config.figures)
