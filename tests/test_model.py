"""Model-based tests of the transport: random traffic checked against a model of ports.

Each seed draws a script: bursts of messages from the main isolate and from
isolates to any port (their own, the main isolate's, each other's), in
tight loops, yielding, or with the sender's loop blocked; isolates blocked
in synchronous code; pauses and resumes; ports closed. The model is the
simplest one there is: every (sender, port) pair sees exactly what was sent,
once and in order, or for a port closed meanwhile a clean prefix of it.
"""

from __future__ import annotations

import asyncio
import collections
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from rayisolates import Capability, Isolate, ReceivePort, SendPort

from . import model_entries
from .support import placed, run

MEMBERS = 3
PORTS = 2
Message = tuple[str, str, int]


@dataclass
class World:
    """The real system (isolates, ports) and the model (what was sent to what)."""

    rng: random.Random
    isolates: dict[str, Isolate] = field(default_factory=dict)
    commands: dict[str, SendPort[Any]] = field(default_factory=dict)
    ports: dict[str, SendPort[Any]] = field(default_factory=dict)  # "name.pN" -> port
    sent: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    closed: set[str] = field(default_factory=set)
    pauses: dict[str, Capability] = field(default_factory=dict)
    main_records: dict[str, list[Message]] = field(default_factory=dict)
    main_counters: collections.Counter[str] = field(default_factory=collections.Counter)


THREE_NODES = ("node_head", "node_a", "node_b")  # the session cluster's (conftest.py)


async def spawn_members(
    control: ReceivePort[Any], nodes: tuple[str, ...] = ()
) -> dict[str, Isolate]:
    """The members, placed on ``nodes`` (custom resources) in turn, if given."""
    names = [f"m{i}" for i in range(MEMBERS)]
    spawned = await asyncio.gather(
        *(
            Isolate.spawn(
                model_entries.member,
                (control.send_port, name, PORTS),
                debug_name=name,
                **placed(nodes, index),
            )
            for index, name in enumerate(names)
        )
    )
    return dict(zip(names, spawned, strict=True))


async def setup(
    world: World, members: dict[str, Isolate], control: ReceivePort[Any]
) -> list[ReceivePort[Message]]:
    """Fresh ports in the main isolate and, after the first seed, in every member."""
    main_ports = []
    for index in range(PORTS):
        key = f"main.p{index}"
        port: ReceivePort[Message] = ReceivePort(key)
        records = world.main_records[key] = []
        port.listen(recording(records))
        world.ports[key] = port.send_port
        main_ports.append(port)
    world.isolates = members
    for _ in members:
        _, name, commands, member_ports = await asyncio.wait_for(anext(control), 60)
        world.commands[name] = commands
        for index, member_port in enumerate(member_ports):
            world.ports[f"{name}.p{index}"] = member_port
    return main_ports


def recording(records: list[Message]) -> Any:
    def record(message: tuple[Any, ...]) -> None:
        records.append(message[:3])  # riders dropped

    return record


async def step(world: World) -> None:
    rng = world.rng
    actor = rng.choice(["main", *world.isolates])
    roll = rng.random()
    if roll < 0.7:
        key = rng.choice(sorted(world.ports))
        count = rng.choice([1, 2, 5, 20, 100, 400]) if rng.random() < 0.95 else 3000
        style = rng.choice(["tight", "yield", "busy", "riders"])
        world.sent[(actor, key)] += count
        if actor == "main":
            for j in range(count):
                n = world.main_counters[key]
                world.ports[key].send(
                    model_entries.message("main", key, n, j, style, world.ports[key])
                )
                world.main_counters[key] += 1
                if style == "yield" and j % 7 == 0:
                    await asyncio.sleep(0)
        else:
            world.commands[actor].send(("send", world.ports[key], key, count, style))
    elif roll < 0.8 and actor != "main":
        world.commands[actor].send(("busy", rng.choice([0.001, 0.01, 0.05])))
    elif roll < 0.9 and actor != "main":
        if actor in world.pauses:
            world.isolates[actor].resume(world.pauses.pop(actor))
        else:
            world.pauses[actor] = world.isolates[actor].pause()
    elif roll < 0.93 and actor != "main":
        index = rng.randrange(PORTS)
        world.closed.add(f"{actor}.p{index}")
        world.commands[actor].send(("close", index))
    else:
        await asyncio.sleep(0)


def check(world: World, records: dict[str, list[Message]]) -> None:
    """Every (sender, port): exactly what was sent, in order; a prefix if the port closed."""
    for key, messages in records.items():
        by_sender: dict[str, list[int]] = collections.defaultdict(list)
        for sender, port_key, n in messages:
            assert port_key == key, f"{key} got a message meant for {port_key}"
            by_sender[sender].append(n)
        senders = {sender for sender, port_key in world.sent if port_key == key}
        for sender in senders | set(by_sender):
            got = by_sender.get(sender, [])
            count = world.sent[(sender, key)]
            assert got == list(range(len(got))), f"{sender} -> {key}: out of order or repeated"
            if key not in world.closed:
                assert len(got) == count, f"{sender} -> {key}: {len(got)} of {count} arrived"
            else:
                assert len(got) <= count


async def finish(world: World, control: ReceivePort[Any], deadline: float) -> None:
    for name, capability in list(world.pauses.items()):
        world.isolates[name].resume(capability)
    world.pauses.clear()
    totals: collections.Counter[str] = collections.Counter()
    for (_, key), count in world.sent.items():
        totals[key] += count
    for name in world.isolates:
        expect = {
            index: totals[f"{name}.p{index}"]
            for index in range(PORTS)
            if f"{name}.p{index}" not in world.closed
        }
        world.commands[name].send(("expect", expect))
    records: dict[str, list[Message]] = {}
    for _ in world.isolates:
        try:
            kind, name, member_records = await asyncio.wait_for(anext(control), deadline)
        except TimeoutError:
            raise AssertionError(await diagnosis(world, control)) from None
        assert kind == "complete"
        for index, messages in member_records.items():
            records[f"{name}.p{index}"] = messages
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while any(len(world.main_records[key]) < totals[key] for key in world.main_records):
        assert loop.time() < end, "the main isolate's ports never got everything"
        await asyncio.sleep(0.01)
    records.update(world.main_records)
    check(world, records)


async def diagnosis(world: World, control: ReceivePort[Any]) -> str:
    """What each (sender, port) pair is missing, from the members' records so far."""
    for name in world.isolates:
        world.commands[name].send(("dump",))
    records: dict[str, list[Message]] = dict(world.main_records)
    dumped: set[str] = set()
    while len(dumped) < len(world.isolates):
        message = await asyncio.wait_for(anext(control), 10)
        if message[0] in ("dump", "complete"):
            dumped.add(message[1])
            for index, messages in message[2].items():
                records[f"{message[1]}.p{index}"] = messages
    lines = []
    for (sender, key), count in sorted(world.sent.items()):
        got = [n for s, k, n in records.get(key, []) if s == sender]
        if len(got) != count and key not in world.closed:
            lines.append(f"{sender} -> {key}: {len(got)} of {count} (last {got[-3:]})")
    return "incomplete: " + "; ".join(lines)


async def scenarios(seeds: range, steps: int, nodes: tuple[str, ...] = ()) -> None:
    """One scenario per seed, on the same three members (reset in between)."""
    control: ReceivePort[Any] = ReceivePort("model-control")
    members = await spawn_members(control, nodes)
    try:
        for seed in seeds:
            world = World(random.Random(seed))
            main_ports = await setup(world, members, control)
            try:
                for _ in range(steps):
                    await step(world)
                await finish(world, control, deadline=60)
            except AssertionError as error:
                raise AssertionError(f"seed {seed}: {error}") from None
            for port in main_ports:
                port.close()
            for commands in world.commands.values():
                commands.send(("reset",))
    finally:
        control.close()
        for isolate in members.values():
            isolate.kill(priority=Isolate.IMMEDIATE)


@pytest.mark.timeout(300)
def test_random_traffic_matches_the_model() -> None:
    run(scenarios(range(12), steps=60), timeout=290)


@pytest.mark.timeout(300)
def test_random_traffic_across_nodes_matches_the_model() -> None:
    """The members on three nodes: direct channels between them, and to the driver."""
    run(scenarios(range(200, 212), steps=60, nodes=THREE_NODES), timeout=290)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_random_traffic_matches_the_model_many_seeds() -> None:
    run(scenarios(range(100, 140), steps=120), timeout=590)
