"""Calls to Ray actors: how a call's failure is read, and calls that survive transient ones.

Ray reports a failed actor call in one of two ways that matter here:

- ``ActorUnavailableError``: the actor could not be reached for now (a lost
  request or response, a node not heard from). The call "may or may not
  have been executed": it is safe to repeat only because every call this
  library makes is idempotent (batches and control records carry sequence
  numbers, polls carry what was received, spawns carry an id).
- ``ActorDiedError`` (and any other ``RayActorError``): the actor is gone.

:func:`outcome` sorts a finished call into ``DELIVERED``, ``RETRY``, ``DEAD``
or ``RAISED`` (the method itself raised); :func:`call` repeats a call until
it is delivered or its actor is dead, backing off between attempts.

One rule for every completion: no code of ours runs on Ray's own callback
thread. Submitting a call from there can block that thread inside Ray's
core worker for good (seen here: ``submit_actor_task`` never returned, and
every reply to the process stopped). :func:`when_done` hands completions
to a thread of ours, in the order Ray reports them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ray import exceptions as ray_errors

__all__ = [
    "DEAD",
    "DELIVERED",
    "RAISED",
    "RETRY",
    "acall",
    "backoff",
    "call",
    "call_in_background",
    "fire",
    "later",
    "outcome",
    "ready_for_finalizers",
    "soon",
    "transmit_batch",
    "transmit_controls",
    "when_done",
]

log = logging.getLogger("rayisolates.rpc")

DELIVERED, RETRY, DEAD, RAISED = "delivered", "retry", "dead", "raised"
_FIRST_BACKOFF, _MAX_BACKOFF = 0.005, 1.0


def outcome(error: BaseException | None) -> str:
    """What a finished call's error (``None``: none) means for whoever sent it."""
    if error is None:
        return DELIVERED
    if isinstance(error, ray_errors.ActorUnavailableError):
        return RETRY
    if isinstance(error, ray_errors.RayActorError):
        return DEAD
    return RAISED


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt`` (1 is the first retry)."""
    if attempt <= 1:
        return 0.0
    return float(min(_FIRST_BACKOFF * 2 ** (attempt - 2), _MAX_BACKOFF))


def fire(method: Any, *args: Any) -> concurrent.futures.Future[Any]:
    """Submit ``method.remote(*args)``; its result (or error) as a concurrent future."""
    future: concurrent.futures.Future[Any] = method.remote(*args).future()
    return future


class _Scheduler:
    """One daemon thread running callbacks at a time (for retries after a backoff)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, delay: float, callback: Callable[[], None]) -> None:
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), callback))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rayisolates-retries", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    timeout = self._due[0][0] - time.monotonic() if self._due else None
                    self._changed.wait(timeout)
                _, _, callback = heapq.heappop(self._due)
            with contextlib.suppress(Exception):  # a retry's failure is reported by its future
                callback()


_scheduler = _Scheduler()


class _Completions:
    """One daemon thread running completion callbacks in the order they arrive."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, callback: Callable[[], None]) -> None:
        """Queue ``callback``; once the thread runs, nothing here takes a lock."""
        self._queue.put(callback)  # a SimpleQueue: safe even inside a finalizer
        if self._thread is None:
            self.start()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rayisolates-completions", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            callback = self._queue.get()
            try:
                callback()
            except Exception:  # a bug of ours: say so, and keep serving the others
                log.exception("rayisolates: a completion callback failed")


_completions = _Completions()

# when_done(future, callback): run callback(future) once it is done, off Ray's thread.
OnDone = Callable[[concurrent.futures.Future[Any], Callable[[Any], None]], None]


def when_done(future: concurrent.futures.Future[Any], callback: Callable[[Any], None]) -> None:
    """Run ``callback(future)`` once ``future`` is done, on the completions thread.

    A future that says it ``completes_off_ray`` (``_direct``) is completed
    on a thread of ours already: its callback runs right there.
    """
    if getattr(future, "completes_off_ray", False):
        future.add_done_callback(callback)
    else:
        future.add_done_callback(lambda done: _completions.put(lambda: callback(done)))


def later(delay: float, callback: Callable[[], None]) -> None:
    """Run ``callback`` on the retry thread after ``delay`` seconds (at once if 0)."""
    if delay <= 0:
        callback()
    else:
        _scheduler.add(delay, callback)


def call(
    make: Callable[[], concurrent.futures.Future[Any]], on_done: OnDone = when_done
) -> concurrent.futures.Future[Any]:
    """Run ``make()`` (which fires one call) until it is delivered or its actor is dead.

    ``make`` is called again for each attempt, so it can bring its
    arguments up to date. The returned future has the call's result, or
    the error of its last attempt (never ``ActorUnavailableError`` alone:
    that one is retried).
    """
    result: concurrent.futures.Future[Any] = concurrent.futures.Future()
    attempts = itertools.count(1)

    def attempt() -> None:
        if result.done():
            return
        try:
            on_done(make(), finished)
        except Exception as error:  # submitting itself failed (Ray shut down)
            result.set_exception(error)

    def finished(done: concurrent.futures.Future[Any]) -> None:
        if result.done():  # its caller cancelled it meanwhile
            return
        error = None if done.cancelled() else done.exception()
        if done.cancelled():
            result.cancel()
        elif outcome(error) == RETRY:
            later(backoff(next(attempts)), attempt)
        elif error is not None:
            result.set_exception(error)
        else:
            result.set_result(done.result())

    attempt()
    return result


def transmit_batch(
    destination: str, route: Any, sender: str, seq: int, batch: list[Any]
) -> concurrent.futures.Future[Any]:
    """One batch of messages to an isolate or the supervisor (``deliver``)."""
    return fire(route.deliver, sender, seq, batch)


def transmit_controls(
    destination: str, route: Any, sender: str, seq: int, batch: list[Any]
) -> concurrent.futures.Future[Any]:
    """One batch of control records to an isolate, the main isolate or the supervisor.

    The supervisor receives for two destinations (itself, and the main
    isolate's control port), so every ``control`` call names its destination.
    """
    return fire(route.control, destination, sender, seq, batch)


def soon(callback: Callable[[], None]) -> None:
    """Run ``callback`` on the completions thread (for calls wanted from Ray's thread).

    Safe in a finalizer, which may run inside any code of ours (a send holding
    a lock included), once :func:`ready_for_finalizers` has run: it then only
    puts on a lock-free queue.
    """
    _completions.put(callback)


def ready_for_finalizers() -> None:
    """Start the completions thread now, so that :func:`soon` takes no lock later."""
    _completions.start()


def call_in_background(method: Any, *args: Any) -> None:
    """Call ``method`` until it is delivered or its actor is dead; nobody waits for it."""
    call(lambda: fire(method, *args))


async def acall(method: Any, *args: Any) -> Any:
    """Await ``method.remote(*args)``, repeating it while its actor is unavailable."""
    for attempt in itertools.count(1):
        try:
            return await method.remote(*args)
        except ray_errors.ActorUnavailableError:
            await asyncio.sleep(backoff(attempt + 1))
    raise AssertionError("unreachable")
