"""``IsolatePool.map``: results as an iterator and an async iterator, pulled lazily."""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
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
    iterable is pulled only as results are taken. A task is one call, or a
    chunk of ``chunksize`` calls whose results come out one by one. Past the
    ``timeout`` (from the ``map`` call) a wait raises ``TimeoutError`` and
    the tasks still pending are cancelled, as ``Executor.map`` does.
    """

    __module__ = "rayisolates"

    def __init__(
        self,
        pool: IsolatePool,
        fn: Callable[..., R],
        items: Iterator[tuple[Any, ...]],
        buffer: int,
        ordered: bool,
        chunksize: int = 1,
        timeout: float | None = None,
    ) -> None:
        self._pool = pool
        self._fn = fn
        self._items = items
        self._buffer = buffer
        self._ordered = ordered
        self._chunksize = chunksize
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._exhausted = False
        self._outstanding = 0  # tasks submitted, not yet handed out
        self._pending: collections.deque[IsolateFuture[Any]] = collections.deque()  # ordered
        self._unpacked: collections.deque[Any] = collections.deque()  # a chunk's results
        # Unordered: each task's future lands here as it completes (one callback each).
        self._lock = threading.Lock()
        self._completed: collections.deque[IsolateFuture[Any]] = collections.deque()
        self._all: set[IsolateFuture[Any]] = set()  # submitted, not handed out
        self._arrived = Waiters(self._lock)

    def _fill(self) -> None:
        while not self._exhausted and self._outstanding < self._buffer:
            if self._chunksize == 1:
                try:
                    args = next(self._items)
                except StopIteration:
                    self._exhausted = True
                    return
                future = self._pool.submit(self._fn, *args)
            else:
                chunk = list(itertools.islice(self._items, self._chunksize))
                if len(chunk) < self._chunksize:
                    self._exhausted = True
                if not chunk:
                    return
                future = self._pool._call("IsolatePool.map()", self._fn, tuple(chunk), None, None)
            self._outstanding += 1
            self._all.add(future)
            if self._ordered:
                self._pending.append(future)
            else:
                future.add_done_callback(self._completes)

    def _completes(self, future: Any) -> None:
        with self._lock:
            self._completed.append(future)
            self._arrived.wake()

    def _remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def _timed_out(self) -> TimeoutError:
        self.cancel()
        return TimeoutError("IsolatePool.map(): results not ready within its timeout")

    def cancel(self) -> None:
        """Cancel the tasks submitted and not yet handed out, and end the iteration."""
        self._exhausted = True
        for future in list(self._all):
            future.cancel()
        self._all.clear()
        self._pending.clear()
        self._unpacked.clear()
        with self._lock:
            self._completed.clear()
        self._outstanding = 0

    def _handed(self, future: IsolateFuture[Any], value: Any) -> R:
        self._all.discard(future)
        if self._chunksize == 1:
            return value  # type: ignore[no-any-return]
        self._unpacked.extend(value)
        return self._unpacked.popleft()  # type: ignore[no-any-return]

    def __iter__(self) -> PoolMap[R]:
        return self

    def __next__(self) -> R:
        if self._unpacked:
            return self._unpacked.popleft()  # type: ignore[no-any-return]
        self._fill()
        if not self._outstanding:
            raise StopIteration
        self._outstanding -= 1
        if self._ordered:
            future = self._pending.popleft()
        else:
            with self._lock:
                arrived = self._arrived.wait_for(lambda: self._completed, self._remaining())
                if arrived:
                    future = self._completed.popleft()
            if not arrived:
                raise self._timed_out()
        try:
            value = future.result(self._remaining())
        except TimeoutError:
            if future.done():
                raise  # the task's own
            raise self._timed_out() from None
        except BaseException:
            self._all.discard(future)
            raise
        return self._handed(future, value)

    def __aiter__(self) -> PoolMap[R]:
        return self

    async def __anext__(self) -> R:
        if self._unpacked:
            return self._unpacked.popleft()  # type: ignore[no-any-return]
        self._fill()
        if not self._outstanding:
            raise StopAsyncIteration
        self._outstanding -= 1
        try:
            future = await asyncio.wait_for(self._next_done(), self._remaining())
        except TimeoutError:
            raise self._timed_out() from None
        try:
            value = await future
        except BaseException:
            self._all.discard(future)
            raise
        return self._handed(future, value)

    async def _next_done(self) -> IsolateFuture[Any]:
        """The next future to hand out, once it is done."""
        if self._ordered:
            future = self._pending[0]
            await asyncio.wait([asyncio.wrap_future(future)])
            self._pending.popleft()
            return future
        while True:
            with self._lock:
                if self._completed:
                    return self._completed.popleft()
                waiter = self._arrived.future()
            await waiter
