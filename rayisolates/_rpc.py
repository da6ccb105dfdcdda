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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
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
    "fire",
    "forget",
    "later",
    "outcome",
    "transmit_batch",
    "transmit_controls",
]

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


def later(delay: float, callback: Callable[[], None]) -> None:
    """Run ``callback`` on the retry thread after ``delay`` seconds (at once if 0)."""
    if delay <= 0:
        callback()
    else:
        _scheduler.add(delay, callback)


def call(
    make: Callable[[], concurrent.futures.Future[Any]],
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
            make().add_done_callback(finished)
        except Exception as error:  # submitting itself failed (Ray shut down)
            result.set_exception(error)

    def finished(done: concurrent.futures.Future[Any]) -> None:
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


def forget(method: Any, *args: Any) -> None:
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
