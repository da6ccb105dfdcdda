"""The pool's tasks and members as a plain state machine: no Ray, no threads, no ports.

:class:`PoolState` takes what happens (a task submitted, a member spawned,
ready or gone, a result, a timeout, the idle check, closing) and answers
with what to do (:data:`Effect`: spawn a member, send a task, end or kill a
member, settle a task, start a timer). The pool (``pool``) feeds it events
under its lock and carries the effects out after releasing it, so no user
callback and no send ever runs under the pool's lock, and every transition
can be driven and checked without Ray (``tests/unit/pool``).

A task's life::

    queued --a member has room--> sent (waiting there, or running) --result--> done
      ^                              |  member gone (crash, kill, node loss):
      |  retries left (at the front)  |  a running task counts one more kill
      +-------------------------------+  no retries left: failed (RemoteError)
                                      |  past its timeout, or a stream forced to
                                      |  stop: failed; its member killed, replaced

Every task a lost member had and had not answered counts one more kill,
the ones waiting behind those it ran included: a member starts its tasks in
order, ``max_parallel`` at once, but an answer lost with it (or still on its
way) may have freed a slot for the next, which the pool cannot tell from
one that never started. So a task that kills its members is always counted
(no poison loop), and without retries no task runs twice. A member the
pool killed itself (a timeout, a forced stop) counts no kill for the tasks
it had besides that one: they go back to the queue. A stream's task is never
retried (its items would come twice).

A member's life::

    starting (spawned) --ready--> ready (its task port known) --told to end--> ending
       |                            |   (idle above min_size, closing)          |
       +----------- gone -----------+----------------- gone -------------------+--> (forgotten)
                                        killed for a task (timeout, forced stop):
                                        ending at once, replaced

A member that is gone without being told to end is replaced.

Sending ahead: besides the ``max_parallel`` tasks a member runs, short
tasks are sent ahead to it (as many as take ``AHEAD_SECONDS`` to run, from
the tasks' average run time, at most ``MOST_AHEAD``), so it never waits a
round trip for its next one. Tasks with a timeout and streams go only where
they start at once, and nothing goes ahead behind a stream.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._errors import RemoteError

__all__ = [
    "AHEAD_SECONDS",
    "MOST_AHEAD",
    "Drop",
    "Effect",
    "EndMember",
    "KillMember",
    "Member",
    "PoolClosed",
    "PoolState",
    "SendTask",
    "Settle",
    "SpawnMember",
    "StartTimer",
    "Task",
]

AHEAD_SECONDS = 0.002
MOST_AHEAD = 16


class PoolClosed(RuntimeError):
    """The pool is closing or closed: nothing more is taken."""


@dataclass(eq=False, slots=True)
class Task:
    """One submitted function call and where it stands."""

    task_id: int
    what: str  # names it in errors
    payload: Any = None  # what a member is sent (opaque here)
    timeout: float | None = None
    streams: bool = False  # a stream's producer: runs as long as it is consumed, never retried
    kills: int = 0  # members gone while running it
    attempt: int = 0  # times sent
    member_id: int | None = None  # the member it was last sent to


@dataclass(eq=False, slots=True)
class Member:
    """One pooled isolate and the tasks sent to it."""

    member_id: int
    handle: Any = None  # the isolate, once spawned (opaque here)
    address: Any = None  # its task port, once ready (opaque here)
    running: dict[int, Task] = field(default_factory=dict)  # sent to it, in order
    ending: bool = False  # told to end, or being ended: no more tasks
    killed_for_task: bool = False  # ended by the pool (a timeout, a forced stop)
    idle_since: float = 0.0

    @property
    def streams(self) -> bool:
        """Whether it runs a stream's producer (nothing is sent ahead behind one)."""
        return any(task.streams for task in self.running.values())


# Effects: what the pool carries out, in order, after releasing its lock -------------------


@dataclass(frozen=True, slots=True)
class SpawnMember:
    """Start the isolate of member ``member_id``."""

    member_id: int


@dataclass(frozen=True, slots=True)
class SendTask:
    """Send ``task``'s payload to the member's task port."""

    address: Any
    task: Task


@dataclass(frozen=True, slots=True)
class EndMember:
    """Tell a ready member to finish what it has and end (``address``: its task port)."""

    address: Any


@dataclass(frozen=True, slots=True)
class KillMember:
    """End a member's isolate: ``immediate`` even in the middle of sync code."""

    handle: Any
    immediate: bool


@dataclass(frozen=True, slots=True)
class Settle:
    """``task`` is done: ``ok`` with ``value`` its result, else ``value`` the error."""

    task: Task
    value: Any
    ok: bool


@dataclass(frozen=True, slots=True)
class Drop:
    """``task`` was never sent and never will be: forget it (its future is cancelled)."""

    task: Task


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Call ``PoolState.expired(task_id, attempt)`` after ``seconds``."""

    seconds: float
    task_id: int
    attempt: int


Effect = SpawnMember | SendTask | EndMember | KillMember | Settle | Drop | StartTimer


class PoolState:
    """Tasks and members of one pool; every method returns the effects to carry out.

    Not thread-safe: the pool calls it under its own lock.

    Args:
        size: The most members at once.
        min_size: Members kept when idle.
        max_parallel: Tasks one member runs at once.
        retries: How often a task whose member was gone while running it
            is sent again.
        idle_seconds: How long a member above ``min_size`` may idle.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        size: int,
        min_size: int,
        max_parallel: int,
        retries: int,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size, self.min_size, self.max_parallel = size, min_size, max_parallel
        self.retries, self.idle_seconds = retries, idle_seconds
        self._clock = clock
        self._queue: collections.deque[Task] = collections.deque()
        self._tasks: dict[int, Task] = {}  # submitted, not settled
        self._members: dict[int, Member] = {}
        self._member_ids = itertools.count()
        self._task_ids = itertools.count()
        self._closing = False  # no more tasks taken
        self._closed = False  # members told to end; none replaced
        self._counts: collections.Counter[str] = collections.Counter()
        self._task_seconds: float | None = None  # tasks' run time, a moving average

    # Events ----------------------------------------------------------------------------

    def start(self) -> list[Effect]:
        """The pool opens: ``min_size`` members start."""
        return [self._spawn() for _ in range(self.min_size)]

    def submit(
        self, what: str, payload: Any, timeout: float | None = None, streams: bool = False
    ) -> tuple[Task, list[Effect]]:
        """A new task; it is sent to a member with room, or queued.

        Raises:
            PoolClosed: The pool is closing.
        """
        if self._closing:
            raise PoolClosed(f"IsolatePool: the pool is closed; {what} was not submitted")
        task = Task(next(self._task_ids), what, payload, timeout, streams)
        self._tasks[task.task_id] = task
        self._queue.append(task)
        return task, self._dispatch()

    def spawned(self, member_id: int, handle: Any) -> list[Effect]:
        """Member ``member_id``'s isolate started."""
        member = self._members.get(member_id)
        if member is None:
            return [KillMember(handle, immediate=False)]
        member.handle = handle
        if self._closed:
            member.ending = True
            return [KillMember(handle, immediate=False)]
        return []

    def spawn_failed(self, member_id: int, error: BaseException) -> list[Effect]:
        """Member ``member_id``'s isolate could not start; with no member left to run
        them, queued tasks fail with ``error``."""
        self._members.pop(member_id, None)
        if any(m.handle is not None or m.address is not None for m in self._members.values()):
            return []
        return self._fail_queued(error)

    def ready(self, member_id: int, address: Any) -> list[Effect]:
        """Member ``member_id`` announced its task port ``address``."""
        member = self._members.get(member_id)
        if member is None:
            return []
        member.address = address
        member.idle_since = self._clock()
        if self._closed or member.ending:
            return [EndMember(address)]
        return self._dispatch()

    def finished(self, task_id: int, value: Any, ok: bool, seconds: float) -> list[Effect]:
        """A member answered task ``task_id`` with ``value`` (``ok``: its result, else the
        error it raised), having run it ``seconds``."""
        task = self._tasks.pop(task_id, None)
        if task is None:  # settled meanwhile (past its timeout, stopped by force): too late
            return self._dispatch()
        if not task.streams:  # a stream lasts as long as its consumer wants
            average = self._task_seconds
            self._task_seconds = seconds if average is None else 0.8 * average + 0.2 * seconds
        self._counts["completed" if ok else "failed"] += 1
        if task.member_id is None:  # queued again, its member lost: its answer came after all
            self._queue.remove(task)
        elif (member := self._members.get(task.member_id)) and task_id in member.running:
            del member.running[task_id]
            if not member.running:
                member.idle_since = self._clock()
        return [Settle(task, value, ok), *self._dispatch()]

    def gone(self, member_id: int) -> list[Effect]:
        """Member ``member_id`` has ended, however it ended (its exit notice)."""
        member = self._members.pop(member_id, None)
        if member is None:
            return []
        effects: list[Effect] = []
        requeued = []
        for task in member.running.values():
            if not member.killed_for_task:  # else it took none of its tasks down
                task.kills += 1  # it may have been running: see the module's note
            if task.kills > self.retries or task.streams:
                ended = "ended" if task.kills <= 1 else f"ended {task.kills} pool members"
                error = RemoteError(
                    f"{task.what}: the pool member running it {ended} before it finished", ""
                )
                effects.append(self._fail(task, error))
            else:
                self._counts["retried"] += 1
                task.member_id = None
                requeued.append(task)
        self._queue.extendleft(reversed(requeued))  # at the front, in their order
        if not member.ending and not self._closed:
            self._counts["replaced"] += 1
            effects.append(self._spawn())
        return effects + self._dispatch()

    def expired(self, task_id: int, attempt: int) -> list[Effect]:
        """Task ``task_id``'s timer, started for its attempt ``attempt``, ran out."""
        task = self._tasks.get(task_id)
        if task is None or task.attempt != attempt:
            return []
        error = TimeoutError(f"{task.what} did not finish within {task.timeout} s")
        return self._kill_for(task, error)

    def abandon(self, task_id: int) -> list[Effect]:
        """A stream's consumer gave up waiting for its producer to stop: never send the
        task, or end the member running it."""
        task = self._tasks.get(task_id)
        if task is None:
            return []
        if task.member_id is None:  # not sent: never will be
            self._queue.remove(task)
            del self._tasks[task_id]
            return [Drop(task)]
        return self._kill_for(task, RemoteError(f"{task.what}: stopped by force", ""))

    def cancel(self, task_id: int) -> list[Effect]:
        """Task ``task_id``'s future was cancelled: a queued task is dropped and never
        runs; one a member has (running, or sent ahead: the pool cannot tell) ends that
        member, which is replaced, and the member's other tasks go back to the queue."""
        task = self._tasks.get(task_id)
        if task is None:
            return []
        self._counts["cancelled"] += 1
        if task.member_id is None:
            self._queue.remove(task)
            del self._tasks[task_id]
            return []
        return self._kill_for(task, None)

    def cancel_queued(self) -> list[Effect]:
        """Drop every task no member has yet (``shutdown(cancel_futures=True)``)."""
        dropped = list(self._queue)
        self._queue.clear()
        for task in dropped:
            del self._tasks[task.task_id]
            self._counts["cancelled"] += 1
        return [Drop(task) for task in dropped]

    def check_idle(self) -> list[Effect]:
        """End members above ``min_size`` that have idled ``idle_seconds``."""
        if self._closed:
            return []
        now = self._clock()
        live = [m for m in self._members.values() if not m.ending]
        idle = [
            m
            for m in live
            if m.address is not None and not m.running and now - m.idle_since >= self.idle_seconds
        ]
        effects: list[Effect] = []
        for member in idle[: max(0, len(live) - self.min_size)]:
            effects += self._end(member)
        return effects

    def close(self) -> None:
        """Take no more tasks; those taken still run (see :meth:`settled`)."""
        self._closing = True

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` (or :meth:`end_all`) was called."""
        return self._closing

    @property
    def settled(self) -> bool:
        """Whether every task taken is done."""
        return not self._tasks

    def end_all(self) -> list[Effect]:
        """Closed: end every member (each finishes what it has first); none is replaced."""
        self._closing = self._closed = True
        effects: list[Effect] = []
        for member in list(self._members.values()):
            effects += self._end(member)
        return effects

    # Figures ---------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """``members`` (live), ``busy`` (running a task), ``queued``, ``running``,
        ``completed``, ``failed``, ``replaced``, ``retried``, ``cancelled``."""
        members = [m for m in self._members.values() if not m.ending]
        return {
            "members": len(members),
            "busy": sum(1 for m in members if m.running),
            "queued": len(self._queue),
            "running": sum(len(m.running) for m in self._members.values()),
            "completed": self._counts["completed"],
            "failed": self._counts["failed"],
            "replaced": self._counts["replaced"],
            "retried": self._counts["retried"],
            "cancelled": self._counts["cancelled"],
        }

    def what(self, task_id: int) -> str:
        """How task ``task_id`` is named in errors."""
        task = self._tasks.get(task_id)
        return "a task" if task is None else task.what

    def members(self) -> list[Member]:
        """The members the pool knows (for checks)."""
        return list(self._members.values())

    def pending(self) -> list[Task]:
        """Tasks taken and not done (for checks)."""
        return list(self._tasks.values())

    # Transitions ---------------------------------------------------------------------

    def _spawn(self) -> SpawnMember:
        member = Member(next(self._member_ids), idle_since=self._clock())
        self._members[member.member_id] = member
        return SpawnMember(member.member_id)

    def _dispatch(self) -> list[Effect]:
        """Hand queued tasks to members with room; start members the queue needs."""
        effects: list[Effect] = []
        average = self._task_seconds
        ahead = 0 if not average else min(MOST_AHEAD, int(AHEAD_SECONDS / average))
        starts = self.max_parallel
        while self._queue:
            task = self._queue[0]
            at_once = task.timeout is not None or task.streams
            limit = starts if at_once else starts + ahead
            # Room: a free slot, or room ahead behind no stream (looked at last: called
            # for every task submitted, with every member full while a queue waits).
            ready = [
                m
                for m in self._members.values()
                if m.address is not None
                and not m.ending
                and (len(m.running) < starts or (len(m.running) < limit and not m.streams))
            ]
            if not ready:
                break
            self._queue.popleft()
            effects += self._send(task, min(ready, key=lambda m: len(m.running)))
        if self._queue and not self._closed:
            live = [m for m in self._members.values() if not m.ending]
            starting = sum(1 for m in live if m.address is None)
            wanted = -(-len(self._queue) // self.max_parallel) - starting
            effects += [self._spawn() for _ in range(min(wanted, self.size - len(live)))]
        return effects

    def _send(self, task: Task, member: Member) -> list[Effect]:
        task.attempt += 1
        task.member_id = member.member_id
        member.running[task.task_id] = task
        effects: list[Effect] = [SendTask(member.address, task)]
        if task.timeout is not None:
            effects.append(StartTimer(task.timeout, task.task_id, task.attempt))
        return effects

    def _kill_for(self, task: Task, error: BaseException | None) -> list[Effect]:
        """Fail ``task`` with ``error`` (or forget it: ``None``, it was cancelled) and end
        the member running it (sync code cannot be interrupted otherwise); its other
        tasks go back to the queue when it is gone."""
        member = self._members.get(task.member_id) if task.member_id is not None else None
        if member is None or task.task_id not in member.running:
            return []
        member.running.pop(task.task_id)
        effects: list[Effect] = []
        if error is None:
            del self._tasks[task.task_id]
        else:
            effects.append(self._fail(task, error))
        if member.killed_for_task:  # killed already, for another of its tasks
            return effects
        if not member.ending and not self._closed:
            self._counts["replaced"] += 1
            effects.append(self._spawn())
        member.killed_for_task = True
        member.ending = True
        if member.handle is not None:
            effects.append(KillMember(member.handle, immediate=True))
        return effects

    def _end(self, member: Member) -> list[Effect]:
        member.ending = True
        if member.address is not None:
            return [EndMember(member.address)]  # it finishes what it has, then ends
        if member.handle is not None:  # not ready yet: its ready message may come too late
            return [KillMember(member.handle, immediate=False)]
        return []  # not even spawned: killed when it is (see spawned)

    def _fail(self, task: Task, error: BaseException) -> Settle:
        self._tasks.pop(task.task_id, None)
        self._counts["failed"] += 1
        return Settle(task, error, ok=False)

    def _fail_queued(self, error: BaseException) -> list[Effect]:
        effects: list[Effect] = []
        while self._queue:
            effects.append(self._fail(self._queue.popleft(), error))
        return effects
