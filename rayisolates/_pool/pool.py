"""``IsolatePool``: warm isolates that run tasks sent as messages, replaced when they end.

Each member is a spawned isolate running ``member.member``: it announces a
task port, runs the tasks it receives in order and answers each on the
pool's result port. A task so costs two port messages, not a Ray task.

Three pieces:

- :class:`IsolatePool`, what users hold: it checks arguments and encodes
  tasks, and hands everything else to its engine. Dropped without being
  closed, it is collected, and its engine closes in the background
  (queued and running tasks finish, then the members end).
- :class:`_Engine`: the pool's lock, its :class:`~.state.PoolState` and
  what carries out the state's effects: spawning members, sending tasks,
  ending members, settling futures, timers. Events (a result, a member
  ready or gone, a timer) change the state under the lock; their effects
  are queued there and carried out in that order after it is released, by
  one thread at a time. So no user callback (a future's) and no send runs
  under the lock, and a member gets its tasks in the order the state chose.
- ``state.PoolState``: the tasks' and members' states, without Ray.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar, overload

from .._context.context import current
from .._context.figures import register_pool, unregister_pool
from .._errors import RemoteError
from .._future import IsolateFuture
from .._isolate import Isolate
from .._ports import RawReceivePort
from .._stream.consumer import IsolateStream
from .._stream.launch import check_stream_call, encode_task, on_pool
from .._transport.codec import encode_plain, is_plain, open_encoded
from .._transport.rpc import later, ready_for_finalizers, soon
from .._transport.wire import Encoded
from .functions import Known, encode_call
from .map import PoolMap
from .member import member
from .state import (
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

__all__ = ["IsolatePool"]

R = TypeVar("R")

IDLE_SECONDS = 10.0  # how long a member above min_size may idle before it ends


class _Engine:
    """The pool's state under its lock, and the effects carried out after it.

    Held by the pool and, while it is open, by its result port: never by
    anything that would keep the pool itself alive.
    """

    def __init__(self, state: PoolState, debug_name: str, options: dict[str, Any]) -> None:
        self.state = state
        self.debug_name = debug_name
        self._options = options
        self.lock = threading.Lock()
        self.settled = threading.Condition(self.lock)  # notified after every event
        self._effects: collections.deque[Effect] = collections.deque()
        self._carrying = False  # a thread is carrying effects out
        self._futures: dict[int, IsolateFuture[Any]] = {}
        self._known: dict[Any, Known] = {}  # by a member's task port: what it holds
        self._closing_in_background = False
        self.streams: weakref.WeakSet[IsolateStream[Any]] = weakref.WeakSet()
        self.results: RawReceivePort[Any] = RawReceivePort(self._on_message, "pool-results")
        self._context = current()

    # Events: the state changes under the lock; effects are carried out after ------------

    def event(self, change: Callable[..., list[Effect]], *args: Any) -> None:
        """Apply one change to the state, then carry out what it calls for."""
        ended_unclosed = False
        with self.lock:
            self._effects.extend(change(*args))
            if self._closing_in_background and self.state.settled:
                self._closing_in_background = False
                self._effects.extend(self.state.end_all())
                ended_unclosed = True
            self.settled.notify_all()
        self._carry_out()
        if ended_unclosed:
            self.results.close()

    def submit(
        self, what: str, work: Encoded, timeout: float | None, streams: bool = False
    ) -> tuple[int, IsolateFuture[Any]]:
        """A new task: its id, and its future (cancelling it drops the task unless a member
        has it already).

        Raises:
            PoolClosed: The pool is closing.
        """
        with self.lock:
            task, effects = self.state.submit(what, work, timeout, streams)
            task_id = task.task_id
            future: IsolateFuture[Any] = IsolateFuture(what, lambda: self.cancel(task_id))
            self._futures[task_id] = future
            self._effects.extend(effects)
        self._carry_out()
        return task_id, future

    def cancel(self, task_id: int) -> None:
        """Task ``task_id``'s future was cancelled: drop the task, or end its member."""
        self.event(self._cancelled, task_id)

    def _cancelled(self, task_id: int) -> list[Effect]:
        self._futures.pop(task_id, None)
        return self.state.cancel(task_id)

    def cancel_queued(self) -> None:
        """Cancel every task no member has yet."""
        self.event(self.state.cancel_queued)

    def _on_message(self, message: Any) -> None:
        """The result port: a member ready, a result, a member's exit notice."""
        first = message[0]
        if first == "ready":
            self.event(self.state.ready, message[1], message[2])
        elif first == "exit":
            self.event(self.state.gone, message[1])
        else:
            task_id, ok, answer, seconds = message
            try:
                value = open_encoded(answer)
            except Exception as error:  # it cannot be rebuilt here (a class this process lacks)
                with self.lock:
                    what = self.state.what(task_id)
                cause = f"{type(error).__name__}: {error}"
                ok = False
                value = RemoteError(f"{what}: its result cannot be rebuilt here: {cause}")
            self.event(self.state.finished, task_id, value, ok, seconds)

    def _carry_out(self) -> None:
        """Carry out queued effects in order; one thread at a time, never under the lock."""
        with self.lock:
            if self._carrying:
                return  # the thread carrying them out takes ours too
            self._carrying = True
        try:
            while True:
                with self.lock:
                    if not self._effects:
                        self._carrying = False
                        return
                    effect = self._effects.popleft()
                self._do(effect)
        except BaseException:
            with self.lock:
                self._carrying = False
            raise

    def _do(self, effect: Effect) -> None:
        if isinstance(effect, SendTask):
            self._send(effect)
        elif isinstance(effect, Settle):
            with self.lock:
                future = self._futures.pop(effect.task.task_id, None)
            if future is not None:
                _settle(future, effect.ok, effect.value)
        elif isinstance(effect, Drop):
            with self.lock:
                dropped = self._futures.pop(effect.task.task_id, None)
            if dropped is not None:
                dropped.cancel()
        elif isinstance(effect, SpawnMember):
            self._spawn(effect.member_id)
        elif isinstance(effect, EndMember):
            effect.address.send(None)  # it finishes what it has, then ends
        elif isinstance(effect, KillMember):
            priority = Isolate.IMMEDIATE if effect.immediate else Isolate.BEFORE_NEXT_EVENT
            effect.handle.kill(priority=priority)
        elif isinstance(effect, StartTimer):
            task_id, attempt = effect.task_id, effect.attempt
            later(effect.seconds, lambda: self.event(self.state.expired, task_id, attempt))

    def _send(self, effect: SendTask) -> None:
        """A task to its member: ``(task_id, key, data, work)``, pickled at C speed when
        ``work`` holds no refs or handles (the hot path)."""
        function, work = effect.task.payload
        if function is None:
            task: tuple[Any, ...] = (effect.task.task_id, None, None, work)
        else:  # its bytes only the first time this member is sent it
            data = self._known_to(effect.address).sending(function)
            task = (effect.task.task_id, function.key, data, work)
        if is_plain(work):
            self._context.send_encoded(effect.address, encode_plain(task))
        else:
            effect.address.send(task)

    def _known_to(self, address: Any) -> Known:
        """The functions the member at ``address`` holds (members gone are forgotten)."""
        known = self._known.get(address)
        if known is None:
            if len(self._known) >= 2 * self.state.size:
                with self.lock:
                    live = {member.address for member in self.state.members()}
                self._known = {a: k for a, k in self._known.items() if a in live}
            known = self._known[address] = Known()
        return known

    def _spawn(self, member_id: int) -> None:
        spawning = Isolate.spawn(
            member,
            (self.results.send_port, member_id, self.state.max_parallel),
            debug_name=f"{self.debug_name}-{member_id}",
            **self._options,
        )

        def spawned(done: concurrent.futures.Future[Isolate]) -> None:
            error = done.exception()
            if error is not None:
                self.event(self.state.spawn_failed, member_id, error)
                return
            isolate = done.result()
            isolate.add_on_exit_listener(self.results.send_port, ("exit", member_id))
            self.event(self.state.spawned, member_id, isolate)

        spawning.add_done_callback(spawned)

    # Idling and closing ------------------------------------------------------------------

    def check_idle(self) -> None:
        """End members idle above ``min_size``; again every half ``idle_seconds`` until
        the pool closes."""
        self.event(self.state.check_idle)
        with self.lock:
            if self.state.closing:
                return
        later(self.state.idle_seconds / 2, self.check_idle)

    def stop_streams(self) -> None:
        for stream in list(self.streams):  # a stream nobody reads would never finish
            stream.stop()

    def close_in_background(self) -> None:
        """Take no more tasks; end the members once those taken are done, nobody waiting
        (the pool was dropped unclosed, or shut down without waiting)."""
        self.stop_streams()
        with self.lock:
            self.state.close()
            self._closing_in_background = True
        self.event(_no_change)

    def end_members(self) -> None:
        """End every member (each finishes what it has first); the result port closes."""
        self.event(self.state.end_all)
        self.results.close()


def _no_change() -> list[Effect]:
    return []


def _settle(future: IsolateFuture[Any], ok: bool, value: Any) -> None:
    """Complete a task's future, unless its owner cancelled it meanwhile."""
    try:
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    except concurrent.futures.InvalidStateError:
        pass


def _collected(engine: _Engine) -> None:
    """The pool was dropped unclosed: close it in the background, off the collector's way
    (a finalizer may run inside any code, a send of ours included)."""
    soon(engine.close_in_background)


class IsolatePool(concurrent.futures.Executor):
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

    A pool dropped without being closed is closed when it is collected:
    what it was given still runs, then its members end.

    It is a ``concurrent.futures.Executor``: :meth:`submit`, :meth:`map` and
    :meth:`shutdown` work as code written for one expects (and
    ``loop.run_in_executor(pool, fn, *args)``), besides :meth:`run`,
    :meth:`stream` and :meth:`stats`.

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
        state = PoolState(size, min_size, max_parallel, retries, idle_seconds)
        self._engine = _Engine(state, self._debug_name, options)
        self._closed = False
        ready_for_finalizers()
        self._finalizer = weakref.finalize(self, _collected, self._engine)
        register_pool(self)
        self._engine.event(state.start)
        later(idle_seconds / 2, self._engine.check_idle)

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

        ``run`` and :meth:`submit` differ only in their keyword arguments:
        ``run`` takes a ``timeout`` for the task, ``submit`` passes every
        keyword argument to ``fn`` (the ``Executor`` contract).

        A function is pickled once and sent to each member once; later tasks
        name it (see ``_pool.functions``): what it captures from its module's
        globals is taken when it is first sent, as Ray does for remote
        functions.

        Args:
            fn: A function, lambda, closure or ``async def`` function.
            *args: Its arguments (copied now, as by ``SendPort.send``).
            timeout: Seconds the task may run; past it the task fails with
                ``TimeoutError`` and its member is ended and replaced.

        Returns:
            An :class:`IsolateFuture`; cancelling it drops a queued task, and
            ends (and replaces) the member of one already sent.

        Raises:
            TypeError: ``fn`` or an argument cannot be sent (named); nothing was
                submitted and the pool keeps working.
            RuntimeError: The pool is closed.
        """
        if timeout is not None and not timeout > 0:
            raise ValueError(f"IsolatePool.run(): timeout must be positive, got {timeout!r}")
        return self._call("IsolatePool.run()", fn, args, {}, timeout)

    @overload
    def submit(
        self, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any
    ) -> IsolateFuture[R]: ...

    @overload
    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> IsolateFuture[R]: ...

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> IsolateFuture[Any]:
        """``fn(*args, **kwargs)`` on the least-loaded member (``concurrent.futures.Executor``).

        As :meth:`run`, keyword arguments included; no task timeout (use
        :meth:`run` for one). Works with ``loop.run_in_executor(pool, ...)``.
        """
        return self._call("IsolatePool.submit()", fn, args, kwargs, None)

    def _call(
        self,
        action: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        timeout: float | None,
    ) -> IsolateFuture[Any]:
        if not callable(fn):
            raise TypeError(f"{action} needs a callable, got {fn!r}")
        payload = encode_call(action, fn, args, kwargs)
        what = str(getattr(fn, "__qualname__", "the task"))
        return self._submit(what, payload, timeout)[1]

    def _submit(
        self, what: str, payload: Any, timeout: float | None, streams: bool = False
    ) -> tuple[int, IsolateFuture[Any]]:
        try:
            return self._engine.submit(what, payload, timeout, streams)
        except PoolClosed as closed:
            raise RuntimeError(str(closed)) from None

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
        engine = self._engine
        result: IsolateStream[R] = on_pool(
            what,
            work,
            buffer,
            submit=lambda producing: self._submit(what, (None, producing), None, streams=True),
            abandon=lambda task_id: engine.event(engine.state.abandon, task_id),
        )
        engine.streams.add(result)
        return result

    @overload
    def map(
        self,
        fn: Callable[..., Awaitable[R]],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        buffer: int | None = None,
        ordered: bool = True,
    ) -> PoolMap[R]: ...

    @overload
    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        buffer: int | None = None,
        ordered: bool = True,
    ) -> PoolMap[R]: ...

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        buffer: int | None = None,
        ordered: bool = True,
    ) -> PoolMap[Any]:
        """``fn(*items)`` for the items of ``iterables`` taken together (as ``map``), as
        an iterator and an async iterator of results.

        The iterables are pulled lazily: at most ``buffer`` tasks (default
        ``2 * size * max_parallel``) are submitted and not yet consumed, so
        an endless iterable and a slow consumer use bounded memory.
        ``buffersize`` is Python 3.14's ``Executor.map`` name for it.

        Args:
            fn: Called once per item (with one item of each iterable).
            *iterables: At least one.
            timeout: Seconds from this call after which waiting for a result
                raises ``TimeoutError``; the tasks still pending are then
                cancelled (``concurrent.futures`` does the same).
            chunksize: Items sent to a member as one task (fewer messages
                for short functions); an error fails its whole chunk.
            buffersize: Same as ``buffer``.
            buffer: Tasks submitted and not yet consumed, at most.
            ordered: ``False`` yields results as they complete.

        Raises:
            TypeError: No iterable, or both ``buffer`` and ``buffersize``.
            ValueError: ``chunksize``, ``buffer`` or ``timeout`` out of range.
        """
        if not iterables:
            raise TypeError("IsolatePool.map() needs at least one iterable")
        if buffer is not None and buffersize is not None and buffer != buffersize:
            raise TypeError(
                "IsolatePool.map(): buffer and buffersize name the same bound; give one"
            )
        bound = buffer if buffer is not None else buffersize
        bound = 2 * self.size * self.max_parallel if bound is None else bound
        if not isinstance(bound, int) or bound < 1:
            raise ValueError(
                f"IsolatePool.map(): buffer must be an int of 1 or more, got {bound!r}"
            )
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(
                f"IsolatePool.map(): chunksize must be an int of 1 or more, got {chunksize!r}"
            )
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"IsolatePool.map(): timeout must be 0 or more, got {timeout!r}")
        items: Iterator[tuple[Any, ...]]
        if len(iterables) > 1:  # as map(): the shortest ends it
            items = iter(zip(*iterables, strict=False))
        else:
            items = ((item,) for item in iterables[0])
        return PoolMap(self, fn, items, bound, ordered, chunksize, timeout)

    @property
    def debug_name(self) -> str:
        """The pool's name (its members are ``name-0``, ``name-1``, ...)."""
        return self._debug_name

    def stats(self) -> dict[str, int]:
        """``members`` (live), ``busy`` (running a task), ``queued``, ``running``,
        ``completed``, ``failed``, ``replaced``, ``retried``, ``cancelled``."""
        with self._engine.lock:
            return self._engine.state.stats()

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
        engine = self._engine
        deadline = None if timeout is None else time.monotonic() + timeout
        engine.stop_streams()
        with engine.lock:
            engine.state.close()
            finished = engine.settled.wait_for(
                lambda: engine.state.settled or self._closed,
                None if deadline is None else max(0.0, deadline - time.monotonic()),
            )
            if self._closed:
                return
            self._closed = True
        self._finalizer.detach()
        unregister_pool(self)
        engine.end_members()
        if not finished:
            raise TimeoutError("IsolatePool.close(): tasks were still running")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """``concurrent.futures.Executor.shutdown``: take no more tasks and end the members.

        Args:
            wait: Wait for the tasks taken to finish, as :meth:`close` does;
                ``False`` returns at once and the members end once they are done.
            cancel_futures: Cancel the tasks no member has started yet first
                (their futures are cancelled; they never run).
        """
        if cancel_futures:
            self._engine.cancel_queued()
        if wait:
            self.close()
            return
        with self._engine.lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer.detach()
        unregister_pool(self)
        self._engine.close_in_background()

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
