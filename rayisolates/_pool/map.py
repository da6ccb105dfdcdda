"""``IsolatePool.map``: results as an iterator and an async iterator, pulled lazily."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._context.waiters import Waiters
from .._future import IsolateFuture

if TYPE_CHECKING:
    from .pool import IsolatePool

__all__ = ["PoolMap"]

R = TypeVar("R")


class PoolMap(Generic[R]):
    """Results of :meth:`IsolatePool.map`: an iterator and an async iterator alike.

    At most ``buffer`` tasks are submitted and not yet handed out: the
    iterable is pulled only as results are taken.
    """

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
        self._arrived = Waiters(self._lock)

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
                future.add_done_callback(self._completes)

    def _completes(self, future: Any) -> None:
        with self._lock:
            self._completed.append(future)
            self._arrived.wake()

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
        while True:
            with self._lock:
                if self._completed:
                    future = self._completed.popleft()
                    break
                waiter = self._arrived.future()
            await waiter
        return await future
