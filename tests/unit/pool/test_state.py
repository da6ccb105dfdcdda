"""The pool's state machine, driven without Ray: members that start, fail to start, run
tasks, crash, are killed and idle; tasks that succeed, raise, kill their member (poison),
hang past their timeout, stream, are cancelled and abandoned; pools that scale down
and up and close.

Each seed runs a random world against :class:`PoolState` and checks, after every
step and at the end, what the pool promises: no more than ``size`` live members, a
task sent only to a ready member with room, every task settled exactly once (or
dropped before it was sent), a poison task failing after exactly ``retries + 1``
members, no task sent twice without retries, nothing lost once members behave.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from rayisolates import RemoteError
from rayisolates._pool.state import (
    Drop,
    Effect,
    EndMember,
    KillMember,
    PoolClosed,
    PoolState,
    SendTask,
    Settle,
    SpawnMember,
    StartTimer,
)

SEEDS = int(os.environ.get("POOL_STATE_SEEDS", "400"))
KINDS = ["ok", "ok", "ok", "ok", "raises", "poison", "hangs", "stream"]


@dataclass
class SimMember:
    """What a member does, as the world sees it."""

    member_id: int
    spawned: bool = False
    ready: bool = False
    told_to_end: bool = False
    dead: str = ""  # how it ended ("exit", "crash", "killed"): its exit notice is due
    gone: bool = False  # its exit notice was delivered
    inbox: list[int] = field(default_factory=list)  # tasks sent to it, not answered, in order
    lost_with_it: list[int] = field(default_factory=list)  # tasks it had when it died


@dataclass
class SimTask:
    task_id: int
    kind: str
    timeout: float | None
    sends: int = 0
    caused: int = 0  # members it killed (a poison task)
    lost: int = 0  # members that crashed with it
    moved: int = 0  # members the pool killed with it (for another task)
    masked: int = 0  # members it killed that the pool killed too (before it knew)
    settled: list[tuple[bool, Any]] = field(default_factory=list)
    dropped: bool = False
    cancelled: bool = False  # its future was cancelled, or shutdown cancelled it queued


class World:
    """A random world around one PoolState; every effect is checked as it is carried out."""

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.seed = seed
        self.now = 0.0
        size = rng.randint(1, 4)
        self.size = size
        self.min_size = rng.randint(0, size)
        self.max_parallel = rng.randint(1, 3)
        self.retries = rng.randint(0, 2)
        self.idle = 10.0
        self.state = PoolState(
            size, self.min_size, self.max_parallel, self.retries, self.idle, clock=lambda: self.now
        )
        self.members: dict[int, SimMember] = {}
        self.tasks: dict[int, SimTask] = {}
        self.timers: list[tuple[float, int, int]] = []
        self.results: list[tuple[int, int]] = []  # (member, task) answered, not yet delivered
        self.closed = False
        self.calm = False
        self.cancelling_queued = False
        self.spawn_failures = rng.random() < 0.2
        self.carry_out(self.state.start())

    # Effects ------------------------------------------------------------------------------

    def carry_out(self, effects: list[Effect]) -> None:
        for effect in effects:
            getattr(self, f"do_{type(effect).__name__}")(effect)

    def do_SpawnMember(self, effect: SpawnMember) -> None:
        assert effect.member_id not in self.members
        self.members[effect.member_id] = SimMember(effect.member_id)

    def do_SendTask(self, effect: SendTask) -> None:
        member = self.members[effect.address]
        task = self.tasks[effect.task.task_id]
        assert member.ready and not member.told_to_end, self.seed
        if task.timeout is not None or task.kind == "stream":
            # (a task settled by an answer from a lost member may still run here)
            busy = [t for t in member.inbox if not self.tasks[t].settled]
            assert len(busy) < self.max_parallel, "sent where it cannot start"
        assert not task.settled and not task.dropped
        task.sends += 1
        allowed = 1 + min(task.lost, self.retries) + task.moved
        assert task.sends <= allowed, f"seed {self.seed}: sent {task.sends} times"
        if not member.dead:
            member.inbox.append(task.task_id)
            return
        member.lost_with_it.append(task.task_id)  # its exit notice is not in yet
        if member.dead == "killed":
            task.moved += 1
        else:
            task.lost += 1

    def do_EndMember(self, effect: EndMember) -> None:
        member = self.members[effect.address]
        assert member.ready
        member.told_to_end = True

    def do_KillMember(self, effect: KillMember) -> None:
        member = self.members[effect.handle]
        assert member.spawned
        assert effect.immediate or not member.ready, "a ready member is told, not killed"
        if member.dead == "crash":  # the pool cannot tell: it counts it as its own kill
            member.dead = "killed"
            for task_id in member.lost_with_it:
                task = self.tasks[task_id]
                task.lost, task.moved = task.lost - 1, task.moved + 1
                task.masked += task.kind == "poison"
        self.die(member, "killed")

    def do_Settle(self, effect: Settle) -> None:
        task = self.tasks[effect.task.task_id]
        assert not task.dropped and not task.cancelled, f"seed {self.seed}: settled after all"
        task.settled.append((effect.ok, effect.value))
        assert len(task.settled) == 1, f"seed {self.seed}: task settled twice"

    def do_Drop(self, effect: Drop) -> None:
        task = self.tasks[effect.task.task_id]
        assert not task.settled and not task.cancelled, self.seed
        assert task.kind == "stream" or self.cancelling_queued, f"seed {self.seed}: dropped"
        assert task.sends == 0 or self.cancelling_queued, self.seed
        assert not any(task.task_id in m.inbox for m in self.members.values()), self.seed
        task.dropped = True
        task.cancelled = self.cancelling_queued

    def do_StartTimer(self, effect: StartTimer) -> None:
        self.timers.append((self.now + effect.seconds, effect.task_id, effect.attempt))

    def die(self, member: SimMember, how: str) -> None:
        """A member's process ends: what it had is lost with it."""
        if member.dead:
            return
        member.dead = how
        for task_id in member.inbox:
            if how == "killed":
                self.tasks[task_id].moved += 1
            else:
                self.tasks[task_id].lost += 1
        member.lost_with_it, member.inbox = member.inbox, []

    # Events -------------------------------------------------------------------------------

    def submit(self) -> None:
        kind = self.rng.choice(KINDS)
        timeout = None
        if kind == "hangs" or (kind == "ok" and self.rng.random() < 0.2):
            timeout = self.rng.choice([1.0, 5.0, 20.0])
        try:
            task, effects = self.state.submit(kind, None, timeout, streams=kind == "stream")
        except PoolClosed:
            assert self.closed
            return
        assert not self.closed
        self.tasks[task.task_id] = SimTask(task.task_id, kind, timeout)
        self.carry_out(effects)

    def step(self) -> bool:
        """One random event (when calm: no crashes, failed spawns, submits, cancels or
        idling). Whether anything happened."""
        choices = self.choices()
        if not choices:
            return False
        what, subject = self.rng.choice(choices)
        getattr(self, f"on_{what}")(subject)
        self.check()
        return True

    def choices(self) -> list[tuple[str, Any]]:
        """What may happen next, each event as often as it is listed."""
        rng, members = self.rng, list(self.members.values())
        choices: list[tuple[str, Any]] = []

        def some(what: str, among: list[Any], times: int = 1) -> None:
            if among:
                choices.extend([(what, rng.choice(among))] * times)

        some("spawned", [m for m in members if not m.spawned and not m.dead])
        some("ready", [m for m in members if m.spawned and not m.ready and not m.dead])
        some("work", [m for m in members if m.ready and not m.dead and m.inbox], times=3)
        some("exit", [m for m in members if m.told_to_end and not m.dead and not m.inbox])
        # A member that ended by itself had its answers delivered before its exit notice.
        answering = {m for m, _ in self.results}
        dead = [m for m in members if m.dead and not m.gone]
        some("gone", [m for m in dead if m.dead != "exit" or m.member_id not in answering])
        some("result", [None] if self.results else [], times=2)
        some("timer", [None] if self.timers else [])
        if self.calm:
            return choices
        if rng.random() < 0.1:
            some("crash", [m for m in members if m.spawned and not m.dead])
        if not self.closed:
            some("submit", [None], times=3)
        pending = [
            t for t in self.tasks.values() if not t.settled and not t.dropped and not t.cancelled
        ]
        if rng.random() < 0.1:
            some("cancel", pending)
        if rng.random() < 0.02:
            some("cancel_queued", [None])
        some("abandon", [t for t in pending if t.kind == "stream"])
        some("idle", [None])
        return choices

    def on_spawned(self, member: SimMember) -> None:
        member.spawned = True
        if self.spawn_failures and not self.calm and self.rng.random() < 0.3:
            member.dead, member.gone = "crash", True  # it never ran: no exit notice either
            self.carry_out(self.state.spawn_failed(member.member_id, RuntimeError("no room")))
        else:
            self.carry_out(self.state.spawned(member.member_id, member.member_id))

    def on_ready(self, member: SimMember) -> None:
        member.ready = True
        self.carry_out(self.state.ready(member.member_id, member.member_id))

    def on_work(self, member: SimMember) -> None:
        """One of the tasks it runs (the first ``max_parallel`` it got) makes progress."""
        running = member.inbox[: self.max_parallel]
        task = self.tasks[self.rng.choice(running)]
        if task.kind == "poison":
            task.caused += 1
            self.die(member, "crash")
        elif task.kind == "hangs":
            pass  # only its timeout ends it
        elif task.kind == "stream" and self.rng.random() < 0.7:
            pass  # still producing
        else:
            member.inbox.remove(task.task_id)
            self.results.append((member.member_id, task.task_id))

    def on_exit(self, member: SimMember) -> None:
        member.dead = "exit"  # ended by itself, having answered everything

    def on_gone(self, member: SimMember) -> None:
        """Its exit notice. Answers it sent before crashing or being killed are lost, or
        come after the notice (another sender's messages)."""
        member.gone = True
        kept = []
        for member_id, task_id in self.results:
            if member_id == member.member_id:  # the pool counts it as lost with the member
                task = self.tasks[task_id]
                if member.dead == "killed":
                    task.moved += 1
                else:
                    task.lost += 1
                if self.rng.random() < 0.5:
                    continue
            kept.append((member_id, task_id))
        self.results = kept
        self.carry_out(self.state.gone(member.member_id))

    def on_result(self, _: None) -> None:
        task_id = self.results.pop(self.rng.randrange(len(self.results)))[1]
        task = self.tasks[task_id]
        ok = task.kind != "raises"
        value: Any = task_id * 10 if ok else ValueError(task_id)
        self.carry_out(self.state.finished(task_id, value, ok, self.rng.random() / 100))

    def on_timer(self, _: None) -> None:
        self.timers.sort()
        due, task_id, attempt = self.timers.pop(0)
        self.now = max(self.now, due)
        self.carry_out(self.state.expired(task_id, attempt))

    def on_crash(self, member: SimMember) -> None:
        self.die(member, "crash")

    def on_submit(self, _: None) -> None:
        self.submit()

    def on_cancel(self, task: SimTask) -> None:
        """Its future is cancelled: queued, it never runs; sent, its member is killed."""
        holders = [m for m in self.members.values() if task.task_id in m.inbox]
        task.cancelled = True
        effects = self.state.cancel(task.task_id)
        self.carry_out(effects)
        for member in holders:  # the pool cannot tell a task sent ahead from a running one
            assert member.dead == "killed", f"seed {self.seed}: a cancelled task runs on"

    def on_cancel_queued(self, _: None) -> None:
        """``shutdown(cancel_futures=True)``: whatever no member has is dropped."""
        self.cancelling_queued = True
        self.carry_out(self.state.cancel_queued())
        self.cancelling_queued = False
        assert self.state.stats()["queued"] == 0, self.seed

    def on_abandon(self, task: SimTask) -> None:
        self.carry_out(self.state.abandon(task.task_id))

    def on_idle(self, _: None) -> None:
        self.now += self.rng.choice([1.0, self.idle])
        self.carry_out(self.state.check_idle())

    # Checks -------------------------------------------------------------------------------

    def check(self) -> None:
        members = self.state.members()
        live = [m for m in members if not m.ending]
        assert len(live) <= self.size, f"seed {self.seed}: {len(live)} live members"
        for member in members:
            for task in member.running.values():
                assert task.member_id == member.member_id
        stats = self.state.stats()
        settled = [t for t in self.tasks.values() if t.settled]
        assert stats["completed"] + stats["failed"] == len(settled), self.seed
        assert stats["completed"] == sum(1 for t in settled if t.settled[0][0])
        assert stats["cancelled"] == sum(1 for t in self.tasks.values() if t.cancelled), self.seed

    def finish(self) -> None:
        """Members behave from now on: everything taken must come to an end."""
        self.calm = True
        for _ in range(20_000):
            if not self.step():
                break
        self.closed = True
        self.state.close()
        for _ in range(20_000):
            if self.state.settled:
                break
            if not self.step():
                break
        assert self.state.settled, f"seed {self.seed}: {self.state.pending()} never finished"
        self.carry_out(self.state.end_all())
        for _ in range(20_000):
            if not self.step():
                break
        assert not [m for m in self.state.members()], f"seed {self.seed}: members left"


@pytest.mark.parametrize("chunk", range(8))
def test_random_worlds_keep_the_pools_promises(chunk: int) -> None:
    for seed in range(chunk, SEEDS, 8):
        check_world(seed)


def check_world(seed: int) -> None:
    world = World(seed)
    for _ in range(world.rng.randint(50, 400)):
        world.step()
    world.finish()
    for task in world.tasks.values():
        if task.dropped or task.cancelled:
            assert not task.settled
            continue
        assert len(task.settled) == 1, f"seed {seed}: task {task.task_id} ({task.kind}) unsettled"
        ok, value = task.settled[0]
        if ok:  # only ever the task's own result
            assert task.kind in ("ok", "stream") and value == task.task_id * 10, seed
        elif isinstance(value, ValueError):
            assert task.kind == "raises" and value.args == (task.task_id,), seed
        else:  # its member was lost under it, it ran past its timeout, or no member started
            assert isinstance(value, RemoteError | TimeoutError | RuntimeError), (seed, value)
        assert task.kind not in ("poison", "hangs") or not ok
        assert task.caused <= world.retries + 1 + task.masked, f"seed {seed}: a poison loop"


def test_a_poison_task_fails_after_exactly_retries_plus_one_members() -> None:
    for retries in range(3):
        state = PoolState(1, 1, 1, retries, 10.0, clock=lambda: 0.0)
        effects = state.start()
        member_id = 0
        state.submit("poison", None)
        kills = 0
        while True:
            assert [type(e) for e in effects] == [SpawnMember]
            state.spawned(member_id, member_id)
            effects = state.ready(member_id, member_id)
            assert [type(e) for e in effects] == [SendTask]
            effects = state.gone(member_id)  # it killed the member
            kills += 1
            settles = [e for e in effects if isinstance(e, Settle)]
            if settles:
                break
            member_id += 1
            effects = [e for e in effects if isinstance(e, SpawnMember)]
        assert kills == retries + 1
        (settle,) = settles
        assert not settle.ok and isinstance(settle.value, RemoteError)
        assert state.stats()["retried"] == retries


def test_members_above_min_size_end_when_idle_and_come_back_under_load() -> None:
    now = [0.0]
    state = PoolState(3, 1, 1, 0, 10.0, clock=lambda: now[0])
    spawns = [e for e in state.start() if isinstance(e, SpawnMember)]
    assert len(spawns) == 1
    tasks = []
    for i in range(3):
        task, effects = state.submit(f"t{i}", None)
        tasks.append(task)
        spawns += [e for e in effects if isinstance(e, SpawnMember)]
    assert len(spawns) == 3  # scaled up to size for the queue
    for spawn in spawns:
        state.spawned(spawn.member_id, spawn.member_id)
        state.ready(spawn.member_id, spawn.member_id)
    for task in tasks:
        state.finished(task.task_id, 1, True, 0.01)
    now[0] += 9.0
    assert state.check_idle() == []  # not idle long enough
    now[0] += 1.0
    ended = state.check_idle()
    assert len(ended) == 2 and all(isinstance(e, EndMember) for e in ended)
    assert state.stats()["members"] == 1  # min_size kept
