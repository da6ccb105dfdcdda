"""``IsolateFuture``: one result from another isolate, awaitable and blocking alike."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

import ray
from ray import exceptions as ray_errors

from ._errors import from_ray
from ._transport.stored import remember

__all__ = ["IsolateFuture"]

R = TypeVar("R")


class IsolateFuture(Generic[R]):
    """The pending result of work submitted to another isolate.

    ``await future`` inside asyncio code, or ``future.result(timeout=None)``
    in a plain script; both give the result or raise what the work raised.
    The work is already running: the future only observes it.

    Differences from Dart: Dart's ``Future`` cannot be cancelled; this one
    can, with :meth:`cancel`.
    """

    __module__ = "rayisolates"
    __slots__ = ("_call", "_cancelled", "_on_cancel", "_ref", "_what")

    def __init__(self, ref: ray.ObjectRef, what: str = "the computation") -> None:
        self._ref: ray.ObjectRef | None = ref
        self._call: concurrent.futures.Future[R] | None = None
        self._on_cancel: Callable[[], None] | None = None
        self._what = what
        self._cancelled = False

    @classmethod
    def _of_call(
        cls,
        call: concurrent.futures.Future[R],
        what: str,
        on_cancel: Callable[[], None],
    ) -> IsolateFuture[R]:
        """A future of a call this library makes (and repeats) itself, such as a spawn.

        Args:
            call: The call's result.
            what: Names the work in messages.
            on_cancel: Undoes the work if it completes after :meth:`cancel`.
        """
        future: IsolateFuture[R] = cls.__new__(cls)
        future._ref = None
        future._call = call
        future._on_cancel = on_cancel
        future._what = what
        future._cancelled = False
        return future

    def result(self, timeout: float | None = None) -> R:
        """Block until the result is ready and return it.

        Args:
            timeout: Seconds to wait; ``None`` waits as long as it takes.

        Raises:
            TimeoutError: Not done within ``timeout`` (the work goes on).
            concurrent.futures.CancelledError: :meth:`cancel` was called.
            RemoteError: The isolate ended without a result.
            Exception: Whatever the work itself raised, as its own type.
        """
        if self._cancelled:
            raise concurrent.futures.CancelledError()
        if self._call is not None:
            # Waiting apart from the result: a TimeoutError the work itself failed
            # with (a pool task past its timeout) is not a wait that ran out.
            concurrent.futures.wait([self._call], timeout)
            if not self._call.done():
                raise TimeoutError(f"{self._what} did not finish in time")
        try:
            if self._call is not None:
                return self._call.result()
            value: R = ray.get(self._ref, timeout=timeout)
        except concurrent.futures.TimeoutError:  # (Ray's GetTimeoutError is one too)
            if self._call is not None:
                raise  # the work's own
            failure: BaseException = TimeoutError(f"{self._what} did not finish in time")
        except ray_errors.RayError as error:
            failure = from_ray(error, cancelled=concurrent.futures.CancelledError, what=self._what)
        else:
            remember(value, self._ref)
            return value
        raise failure  # outside the except block: no Ray error chained as context

    def __await__(self) -> Generator[Any, None, R]:
        return self._wait().__await__()

    async def _wait(self) -> R:
        if self._cancelled:
            raise asyncio.CancelledError()
        try:
            if self._call is not None:
                return await asyncio.wrap_future(self._call)
            value: R = await self._ref  # type: ignore[misc]
        except ray_errors.RayError as error:
            failure = from_ray(error, cancelled=asyncio.CancelledError, what=self._what)
        else:
            remember(value, self._ref)
            return value
        raise failure  # outside the except block: no Ray error chained as context

    def done(self) -> bool:
        """Whether the work has finished (with a result or an error) or was cancelled."""
        if self._cancelled:
            return True
        if self._call is not None:
            return self._call.done()
        ready, _ = ray.wait([self._ref], timeout=0, fetch_local=False)
        return bool(ready)

    def cancelled(self) -> bool:
        """Whether :meth:`cancel` took effect."""
        return self._cancelled

    def cancel(self) -> bool:
        """Cancel the work if it has not finished; a running one is stopped.

        For ``Isolate.run``, a computation already running is stopped by
        ending the worker process that runs it (Ray's forced cancel), so even
        a blocking call ends. For ``Isolate.spawn``, an isolate that starts
        after all is ended at once.

        Returns:
            ``True`` if the future is now cancelled, ``False`` if the work had
            already finished.
        """
        if self._cancelled:
            return True
        if self.done():
            return False
        self._cancelled = True
        if self._call is not None:
            on_cancel = self._on_cancel
            assert on_cancel is not None
            self._call.add_done_callback(lambda done: on_cancel())
        else:
            ray.cancel(self._ref, force=True)
        return True

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else ("done" if self.done() else "pending")
        return f"<IsolateFuture {self._what} {state}>"
