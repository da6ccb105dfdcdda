"""``IsolatePool``: warm isolates that run tasks sent as messages, replaced when they end.

Each member is a spawned isolate running :func:`_member`: it announces a
task port, runs the tasks it receives in order, ``max_parallel`` at once
(async ones interleave, sync ones block its loop in turn), and sends
``(task_id, ok, encoded value, seconds)`` back to the pool's result port.
A task so costs two port messages, not a Ray task. Short tasks are sent
ahead (up to ``_MOST_AHEAD`` beyond ``max_parallel``) so a member never
waits a round trip for its next one.

The pool's bookkeeping lives under one lock, driven by three things: calls
from the user (``run``, ``close``), messages on the result port (a member
ready, a result, a member's exit notice) and timers (a task's timeout, the
idle check). A task's life::

    queued --a member has room--> sent (waiting there, or running) --result--> done
      ^                              |  member ended (crash, kill, node loss):
      |   retries left (at the front) |  a running task counts one more kill
      +-------------------------------+  no retries left: failed (RemoteError)
                                      |  past its timeout: failed (TimeoutError),
                                      |  the member ended and replaced

The first ``max_parallel`` tasks sent to a member and not answered are the
ones running (it starts them in order); only they count a kill when it
ends. Those waiting behind them may have run too if a result was lost with
the member, so without retries they fail rather than run twice.

A member's life: starting (spawned) -> ready (its task port known) ->
ending (told to finish: idle above ``min_size``, closing, or timed out) ->
gone (its exit notice). One that ends when not told to is replaced.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import inspect
import itertools
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from ._context.context import current
from ._context.figures import register_pool, unregister_pool
from ._errors import RemoteError
from ._future import IsolateFuture
from ._isolate import Isolate
from ._ports import RawReceivePort, ReceivePort
from ._run import _portable
from ._sendport import SendPort
from ._stream import IsolateStream, check_stream_call, encode_task, produce
from ._transport.codec import encode, open_encoded, open_encoded_async
from ._transport.rpc import later
from ._transport.wire import Encoded

__all__ = ["IsolatePool", "PoolMap"]

R = TypeVar("R")

IDLE_SECONDS = 10.0  # how long a member above min_size may idle before it ends
# Tasks sent ahead to a member beyond those it runs, so it never waits for the next
# one: as many as take this long to run (from the tasks' average run time), up to
# _MOST_AHEAD. Long tasks are not sent ahead, so they stay balanced across members.
_AHEAD_SECONDS = 0.002
_MOST_AHEAD = 16


# The member: runs inside each pooled isolate -------------------------------------------


async def _member(setup: tuple[SendPort[Any], int, int]) -> None:
    """A pool member: announce a task port; run what arrives on it in order, at most
    ``max_parallel`` at once (the rest wait here, sent ahead); answer each task."""
    results, member_id, max_parallel = setup
    tasks: ReceivePort[Any] = ReceivePort("pool-member")
    results.send(("ready", member_id, tasks.send_port))
    slots = asyncio.Semaphore(max_parallel)
    running: set[asyncio.Task[None]] = set()
    async for task in tasks:
        if task is None:  # told to end: finish what runs and waits, then go
            break
        job = asyncio.ensure_future(_perform(results, slots, *task))
        running.add(job)
        job.add_done_callback(running.discard)
    tasks.close()
    if running:
        await asyncio.gather(*running)


async def _perform(
    results: SendPort[Any], slots: asyncio.Semaphore, task_id: int, work: Encoded
) -> None:
    """Run one task; answer ``(task_id, ok, encoded value or error, seconds it ran)``.

    The task is opened here, not by the port: a function this process cannot
    load (its module is missing here, say) fails its task, not the member.
    """
    async with slots:  # tasks start in the order they arrived
        started = time.perf_counter()
        try:
            fn, args = await open_encoded_async(work)
            value = fn(*args)
            if inspect.isawaitable(value):
                value = await value
            ok, answer = True, encode(value, "returning a pool task's result")
        except Exception as error:
            ok, answer = False, encode(_portable(error), "raising from a pool task")
        results.send((task_id, ok, answer, time.perf_counter() - started))


# The pool: runs where it was made ---------------------------------------------------


@dataclass(eq=False)
class _Task:
    task_id: int
    message: Encoded  # (task_id, encoded (fn, args)) for a member, encoded once at run()
    future: concurrent.futures.Future[Any]
    timeout: float | None
    what: str
    streams: bool = False  # a stream's producer: runs as long as it is consumed, never retried
    kills: int = 0  # members that ended while running it
    attempt: int = 0
    member: _Member | None = None  # the member it was last sent to


@dataclass(eq=False)
class _Member:
    member_id: int
    isolate: Isolate | None = None
    port: SendPort[Any] | None = None  # its task port, once ready
    running: dict[int, _Task] = field(default_factory=dict)  # sent to it, in order
    ending: bool = False  # told to end (or being ended): no more tasks
    timed_out: bool = False  # ended by the pool: a task past its timeout, a stream forced
    idle_since: float = field(default_factory=time.monotonic)

    @property
    def streams(self) -> bool:
        """Whether it runs a stream's producer (nothing is sent ahead behind one)."""
        return any(task.streams for task in self.running.values())


class IsolatePool:
    """Warm isolates that run functions, balanced by load, replaced when they end.

    Args:
        size: The most members at once (each a spawned isolate).
        min_size: Members kept when idle (default ``size``). Members above
            it end after idling ``idle_seconds`` and come back under load.
        max_parallel: Tasks one member runs at once (``async def`` tasks
            interleave; sync ones wait their turn on the member's loop).
        retries: How often a task whose member ended while running it is
            run again on another member. A task that has ended more members
            than that fails for good (no poison loop).
        idle_seconds: See ``min_size``.
        debug_name: Names the members (``"name-3"``).
        **options: Ray actor options for each member (``num_cpus``,
            ``resources``, ``scheduling_strategy="SPREAD"``, ...).

    Differences from Dart: Dart's ``package:isolate`` LoadBalancer had no
    replacement, retries, timeouts or scaling; it is discontinued.
    """

    __module__ = "rayisolates"

    def __init__(
        self,
        size: int,
        *,
        min_size: int | None = None,
        max_parallel: int = 1,
        retries: int = 0,
        idle_seconds: float = IDLE_SECONDS,
        debug_name: str | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"IsolatePool(): size must be an int of 1 or more, got {size!r}")
        min_size = size if min_size is None else min_size
        if not isinstance(min_size, int) or not 0 <= min_size <= size:
            raise ValueError(
                f"IsolatePool(): min_size must be between 0 and size ({size}), got {min_size!r}"
            )
        if not isinstance(max_parallel, int) or max_parallel < 1:
            raise ValueError(
                f"IsolatePool(): max_parallel must be an int of 1 or more, got {max_parallel!r}"
            )
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"IsolatePool(): retries must be 0 or more, got {retries!r}")
        if idle_seconds <= 0:
            raise ValueError(f"IsolatePool(): idle_seconds must be positive, got {idle_seconds!r}")
        self.size, self.min_size, self.max_parallel = size, min_size, max_parallel
        self.retries, self.idle_seconds = retries, idle_seconds
        self._debug_name = debug_name or "pool"
        self._options = options
        self._lock = threading.RLock()
        self._settled = threading.Condition(self._lock)
        self._queue: collections.deque[_Task] = collections.deque()
        self._tasks: dict[int, _Task] = {}
        self._members: dict[int, _Member] = {}
        self._member_ids = itertools.count()
        self._task_ids = itertools.count()
        self._closing = False
        self._closed = False
        self._spawn_error: BaseException | None = None
        self._counts = collections.Counter[str]()
        self._task_seconds: float | None = None  # tasks' run time, a moving average
        self._streams: weakref.WeakSet[IsolateStream[Any]] = weakref.WeakSet()
        self._results: RawReceivePort[Any] = RawReceivePort(self._on_message, "pool-results")
        self._context = current()
        register_pool(self)
        with self._lock:
            for _ in range(min_size):
                self._spawn()
        later(idle_seconds / 2, self._check_idle)

    # Submitting ---------------------------------------------------------------------

    @overload
    def run(
        self, fn: Callable[..., Awaitable[R]], *args: Any, timeout: float | None = None
    ) -> IsolateFuture[R]: ...

    @overload
    def run(
        self, fn: Callable[..., R], *args: Any, timeout: float | None = None
    ) -> IsolateFuture[R]: ...

    def run(
        self, fn: Callable[..., Any], *args: Any, timeout: float | None = None
    ) -> IsolateFuture[Any]:
        """Run ``fn(*args)`` on the least-loaded member; never blocks.

        Same contract as ``Isolate.run``: the result, or the same exception
        type with the remote stack attached; a member that ends mid-task
        gives :class:`RemoteError` (or a retry, with ``retries``).

        Args:
            fn: A function, lambda, closure or ``async def`` function.
            *args: Its arguments (copied now, as by ``SendPort.send``).
            timeout: Seconds the task may run; past it the task fails with
                ``TimeoutError`` and its member is ended and replaced.

        Raises:
            TypeError: ``fn`` or an argument cannot be sent (named); nothing
                was submitted and the pool keeps working.
            RuntimeError: The pool is closed.
        """
        if not callable(fn):
            raise TypeError(f"IsolatePool.run() needs a callable, got {fn!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"IsolatePool.run(): timeout must be positive, got {timeout!r}")
        work = encode_task("IsolatePool.run()", fn, args)
        what = str(getattr(fn, "__qualname__", "the task"))
        task = self._submit(work, what, timeout)
        return IsolateFuture._of_call(task.future, what, on_cancel=lambda: None)

    def stream(
        self,
        fn: Callable[..., Iterator[R] | AsyncIterator[R]],
        *args: Any,
        buffer: int = 16,
    ) -> IsolateStream[R]:
        """The generator ``fn(*args)`` on the least-loaded member; its items as they come.

        As ``Isolate.stream``, on a warm member: backpressure by ``buffer``,
        stopped by ``break``, ``close()`` or dropping the stream (a producer
        stuck in sync code ends its member, which is replaced). A stream is
        never retried (its items would come twice); a member that dies
        mid-stream gives ``RemoteError`` after the items that arrived.
        """
        check_stream_call("IsolatePool.stream()", fn, buffer)
        work = encode_task("IsolatePool.stream()", fn, args)
        what = str(getattr(fn, "__qualname__", "the stream"))
        result: IsolateStream[R] = IsolateStream(what, buffer)
        self._streams.add(result)
        producing = encode_task("IsolatePool.stream()", produce, (result.send_port, work, buffer))
        task = self._submit(producing, what, None, streams=True)
        result._started(lambda: self._abandon(task))
        weakly = weakref.ref(result)  # the task must not keep the stream from being dropped

        def ended(done: concurrent.futures.Future[Any]) -> None:
            """The producer's end comes after its items, on the stream's own port; what
            comes here is a member that died (or was ended) under it."""
            stream = weakly()
            error = None if done.cancelled() else done.exception()
            if stream is not None and error is not None:
                stream._finish(error)

        task.future.add_done_callback(ended)
        return result

    def _submit(
        self, work: Encoded, what: str, timeout: float | None, streams: bool = False
    ) -> _Task:
        task_id = next(self._task_ids)
        message = encode((task_id, work))
        task = _Task(task_id, message, concurrent.futures.Future(), timeout, what, streams=streams)
        with self._lock:
            if self._closing:
                raise RuntimeError(f"IsolatePool: the pool is closed; {what} was not submitted")
            self._tasks[task_id] = task
            self._queue.append(task)
            self._dispatch()
        return task

    def map(
        self,
        fn: Callable[[Any], R],
        iterable: Iterable[Any],
        *,
        buffer: int | None = None,
        ordered: bool = True,
    ) -> PoolMap[R]:
        """``fn(item)`` for each item, as an iterator and an async iterator of results.

        The iterable is pulled lazily: at most ``buffer`` tasks (default
        ``2 * size * max_parallel``) are submitted and not yet consumed, so
        an endless iterable and a slow consumer use bounded memory.
        ``ordered=False`` yields results as they complete.
        """
        buffer = 2 * self.size * self.max_parallel if buffer is None else buffer
        if buffer < 1:
            raise ValueError(f"IsolatePool.map(): buffer must be 1 or more, got {buffer!r}")
        return PoolMap(self, fn, iter(iterable), buffer, ordered)

    @property
    def debug_name(self) -> str:
        """The pool's name (its members are ``name-0``, ``name-1``, ...)."""
        return self._debug_name

    def stats(self) -> dict[str, int]:
        """``members`` (live), ``busy`` (running a task), ``queued``, ``running``,
        ``completed``, ``failed``, ``replaced``, ``retried``."""
        with self._lock:
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
            }

    # Closing -------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Finish queued and running tasks, then end every member; idempotent.

        Streams of the pool are stopped (their consumers get what arrived).

        Raises:
            TimeoutError: Work was still going on after ``timeout`` seconds
                (the members are ended all the same).
        """
        if asyncio._get_running_loop() is not None:
            raise RuntimeError(
                "IsolatePool.close() waits for the pool's tasks and would block this event "
                "loop; use `await pool.aclose()` or `async with IsolatePool(...)` here"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        for stream in list(self._streams):  # a stream nobody reads would never finish
            stream._stop()
        with self._lock:
            self._closing = True
            unfinished = False
            while self._tasks and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    unfinished = True
                    break
                self._settled.wait(remaining)
            if self._closed:
                return
            self._closed = True
            unregister_pool(self)
            members = list(self._members.values())
            for member in members:
                self._end(member)
        self._results.close()
        if unfinished:
            raise TimeoutError("IsolatePool.close(): tasks were still running")

    async def aclose(self, timeout: float | None = None) -> None:
        """:meth:`close`, awaitable."""
        await asyncio.to_thread(self.close, timeout)

    def __enter__(self) -> IsolatePool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> IsolatePool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<IsolatePool {self._debug_name} {self.stats()}>"

    # Under the lock --------------------------------------------------------------------

    def _spawn(self) -> None:
        member = _Member(next(self._member_ids))
        self._members[member.member_id] = member
        spawning = Isolate.spawn(
            _member,
            (self._results.send_port, member.member_id, self.max_parallel),
            debug_name=f"{self._debug_name}-{member.member_id}",
            **self._options,
        )
        call = spawning._call
        assert call is not None
        call.add_done_callback(lambda done: self._spawned(member, done))

    def _spawned(self, member: _Member, done: concurrent.futures.Future[Isolate]) -> None:
        error = done.exception()
        with self._lock:
            if error is not None:
                self._members.pop(member.member_id, None)
                self._spawn_error = error
                if not any(m.isolate or m.port for m in self._members.values()):
                    self._fail_queued(error)
                    self._settled.notify_all()
                return
            member.isolate = isolate = done.result()
            if self._closed:
                member.ending = True
        isolate.add_on_exit_listener(self._results.send_port, ("exit", member.member_id))
        if member.ending:
            isolate.kill()

    def _on_message(self, message: Any) -> None:
        first = message[0]
        with self._lock:
            if first == "ready":
                self._ready(message[1], message[2])
            elif first == "exit":
                self._gone(message[1])
            else:
                self._finished(*message)
            self._dispatch()
            self._settled.notify_all()

    def _ready(self, member_id: int, port: SendPort[Any]) -> None:
        member = self._members.get(member_id)
        if member is None:
            return
        member.port = port
        member.idle_since = time.monotonic()
        if self._closed or member.ending:
            port.send(None)

    def _finished(self, task_id: int, ok: bool, answer: Encoded, elapsed: float) -> None:
        task = self._tasks.pop(task_id, None)
        if task is None or task.member is None:  # timed out meanwhile: too late
            return
        if not task.streams:  # a stream lasts as long as its consumer wants
            average = self._task_seconds
            self._task_seconds = elapsed if average is None else 0.8 * average + 0.2 * elapsed
        member = task.member
        if member.running.pop(task_id, None) is not None and not member.running:
            member.idle_since = time.monotonic()
        if task.future.done():
            return
        try:
            value = open_encoded(answer)
        except Exception as error:  # it cannot be rebuilt here (a class this process lacks)
            ok, value = (
                False,
                RemoteError(
                    f"{task.what}: its result cannot be rebuilt here: "
                    f"{type(error).__name__}: {error}",
                    "",
                ),
            )
        if ok:
            self._counts["completed"] += 1
            task.future.set_result(value)
        else:
            self._counts["failed"] += 1
            task.future.set_exception(value)

    def _gone(self, member_id: int) -> None:
        member = self._members.pop(member_id, None)
        if member is None:
            return
        requeued = []
        for position, task in enumerate(member.running.values()):
            if task.future.done():
                continue
            # The first max_parallel were running (tasks start in order); those behind
            # them were waiting, unless a result was lost as the member died: they are
            # run again with retries, failed without (they may have run). A member the
            # pool ended for a timeout took none of its tasks down with it.
            running = position < self.max_parallel
            if member.timed_out:
                pass
            elif running:
                task.kills += 1
            elif self.retries == 0:
                task.kills = 1  # counted as running: it may have
            if task.kills > self.retries or (task.streams and not member.timed_out):
                self._tasks.pop(task.task_id, None)
                self._counts["failed"] += 1
                ended = "ended" if task.kills <= 1 else f"ended {task.kills} pool members"
                task.future.set_exception(
                    RemoteError(
                        f"{task.what}: the pool member running it {ended} before it finished",
                        "",
                    )
                )
            else:
                self._counts["retried"] += 1
                requeued.append(task)
        self._queue.extendleft(reversed(requeued))  # at the front, in their order
        if not member.ending and not self._closed:
            self._counts["replaced"] += 1
            self._spawn()

    def _dispatch(self) -> None:
        """Hand queued tasks to members with room; start members the queue needs."""
        average = self._task_seconds
        ahead = 0 if not average else min(_MOST_AHEAD, int(_AHEAD_SECONDS / average))
        while self._queue:
            task = self._queue[0]
            if task.future.done():
                self._queue.popleft()
                continue
            # A task with a timeout or a stream goes only where it starts at once (its
            # clock runs; it may run for long), and nothing goes ahead behind a stream.
            at_once = task.timeout is not None or task.streams
            ready = [
                m
                for m in self._members.values()
                if m.port is not None
                and not m.ending
                and len(m.running) < self.max_parallel + (0 if at_once or m.streams else ahead)
            ]
            if not ready:
                break
            self._queue.popleft()
            self._start(task, min(ready, key=lambda m: len(m.running)))
        if self._queue and not self._closed:
            live = [m for m in self._members.values() if not m.ending]
            starting = sum(1 for m in live if m.port is None)
            wanted = -(-len(self._queue) // self.max_parallel) - starting
            for _ in range(min(wanted, self.size - len(live))):
                self._spawn()

    def _start(self, task: _Task, member: _Member) -> None:
        assert member.port is not None
        task.attempt += 1
        task.member = member
        member.running[task.task_id] = task
        self._context.send_encoded(member.port, task.message)
        if task.timeout is not None:
            attempt = task.attempt
            later(task.timeout, lambda: self._expire(task, member, attempt))

    def _expire(self, task: _Task, member: _Member, attempt: int) -> None:
        error = TimeoutError(f"{task.what} did not finish within {task.timeout} s")
        with self._lock:
            if task.attempt != attempt:
                return
        self._recycle(task, member, error)

    def _abandon(self, task: _Task) -> None:
        """A stream's consumer gave up waiting for its producer to stop: end its member,
        or, not sent to one yet, never send it."""
        with self._lock:
            member = task.member
            if member is None:
                task.future.cancel()  # skipped when its turn comes
                self._tasks.pop(task.task_id, None)
                self._settled.notify_all()
                return
        self._recycle(task, member, RemoteError(f"{task.what}: stopped by force", ""))

    def _recycle(self, task: _Task, member: _Member, error: BaseException) -> None:
        """Fail ``task`` with ``error`` and end the member running it; a fresh one comes.

        Sync code cannot be interrupted otherwise. Other tasks on the member
        go back to the queue, not counted as killed.
        """
        with self._lock:
            if task.future.done() or task.task_id not in member.running:
                return
            self._tasks.pop(task.task_id, None)
            member.running.pop(task.task_id, None)
            self._counts["failed"] += 1
            task.future.set_exception(error)
            member.timed_out = True
            member.ending = True
            self._counts["replaced"] += 1
            if not self._closed:
                self._spawn()
            self._settled.notify_all()
        if member.isolate is not None:
            member.isolate.kill(priority=Isolate.IMMEDIATE)

    def _end(self, member: _Member) -> None:
        member.ending = True
        if member.port is not None:
            member.port.send(None)  # it finishes what it runs, then ends
        elif member.isolate is not None:  # not ready yet: its ready message may come too late
            member.isolate.kill()

    def _check_idle(self) -> None:
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            live = [m for m in self._members.values() if not m.ending]
            idle = [
                m
                for m in live
                if m.port is not None and not m.running and now - m.idle_since >= self.idle_seconds
            ]
            for member in idle[: max(0, len(live) - self.min_size)]:
                self._end(member)
                self._settled.notify_all()
        later(self.idle_seconds / 2, self._check_idle)

    def _fail_queued(self, error: BaseException) -> None:
        while self._queue:
            task = self._queue.popleft()
            self._tasks.pop(task.task_id, None)
            if not task.future.done():
                self._counts["failed"] += 1
                task.future.set_exception(error)


class PoolMap(Generic[R]):
    """Results of :meth:`IsolatePool.map`: an iterator and an async iterator alike."""

    __module__ = "rayisolates"

    def __init__(
        self,
        pool: IsolatePool,
        fn: Callable[[Any], R],
        items: Iterator[Any],
        buffer: int,
        ordered: bool,
    ) -> None:
        self._pool = pool
        self._fn = fn
        self._items = items
        self._buffer = buffer
        self._ordered = ordered
        self._exhausted = False
        self._outstanding = 0  # submitted, not yet handed out
        self._pending: collections.deque[IsolateFuture[R]] = collections.deque()  # ordered
        # Unordered: each task's future lands here as it completes (one callback each).
        self._lock = threading.Lock()
        self._completed: collections.deque[IsolateFuture[R]] = collections.deque()
        self._arrived = threading.Condition(self._lock)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def _fill(self) -> None:
        while not self._exhausted and self._outstanding < self._buffer:
            try:
                item = next(self._items)
            except StopIteration:
                self._exhausted = True
                return
            future = self._pool.run(self._fn, item)
            self._outstanding += 1
            if self._ordered:
                self._pending.append(future)
            else:
                _call_of(future).add_done_callback(functools.partial(self._completes, future))

    def _completes(self, future: IsolateFuture[R], _: object = None) -> None:
        with self._lock:
            self._completed.append(future)
            self._arrived.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            loop.call_soon_threadsafe(_wake, waiter)

    def __iter__(self) -> PoolMap[R]:
        return self

    def __next__(self) -> R:
        self._fill()
        if not self._outstanding:
            raise StopIteration
        self._outstanding -= 1
        if self._ordered:
            return self._pending.popleft().result()
        with self._lock:
            self._arrived.wait_for(lambda: self._completed)
            future = self._completed.popleft()
        return future.result()

    def __aiter__(self) -> PoolMap[R]:
        return self

    async def __anext__(self) -> R:
        self._fill()
        if not self._outstanding:
            raise StopAsyncIteration
        self._outstanding -= 1
        if self._ordered:
            return await self._pending.popleft()
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._completed:
                    future = self._completed.popleft()
                    break
                waiter = loop.create_future()
                self._waiters.append((loop, waiter))
            await waiter
        return await future


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _call_of(future: IsolateFuture[R]) -> concurrent.futures.Future[R]:
    call = future._call
    assert call is not None  # a pool task's future is always a call of ours
    return call
