"""Waiting for a change under one lock, from threads and from event loops alike."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

__all__ = ["Waiters"]


class Waiters:
    """Threads and event loops waiting for something guarded by ``lock`` to change.

    A thread waits on the condition (:meth:`wait_for`); a coroutine takes a
    future (:meth:`future`) under the lock and awaits it after releasing it.
    Whoever changes the state calls :meth:`wake` under the lock: every thread
    and every loop then looks again.

    Args:
        lock: The lock that guards what the waiters wait for.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self._condition = threading.Condition(lock)
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def wait_for(self, predicate: Callable[[], object], timeout: float | None = None) -> bool:
        """Under the lock: block this thread until ``predicate()`` holds (or ``timeout``)."""
        return bool(self._condition.wait_for(predicate, timeout))

    def future(self) -> asyncio.Future[None]:
        """Under the lock: a future of the running loop, done at the next :meth:`wake`."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._futures.append((loop, waiter))
        return waiter

    def wake(self) -> None:
        """Under the lock: everyone waiting looks again."""
        self._condition.notify_all()
        futures, self._futures = self._futures, []
        for loop, waiter in futures:
            with contextlib.suppress(RuntimeError):  # its loop closed: nobody awaits it
                loop.call_soon_threadsafe(_set_done, waiter)


def _set_done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
