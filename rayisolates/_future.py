"""``IsolateFuture``: one result from another isolate, awaitable and blocking alike.

An ``IsolateFuture`` is a ``concurrent.futures.Future`` whose outcome
arrives from elsewhere: an ``Isolate.run`` task's Ray object (:meth:`of_ref`),
a call this library makes and repeats itself, such as a spawn
(:meth:`following`), or a pool that settles its tasks itself. Whatever
completes it, it is completed on a thread of ours, never on Ray's callback
thread, so callbacks added to it may do anything. No Ray error reaches a
caller: the outcome is translated (``_errors.from_ray``) before it is set.
Someone already waiting for an ``Isolate.run`` result (``result()``,
``await``) waits on Ray's object directly, in their own thread or loop, and
completes the future from there: a round trip costs what a raw task's does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import ray
from ray import exceptions as ray_errors

from ._errors import from_ray
from ._transport.rpc import when_done
from ._transport.stored import remember

__all__ = ["IsolateFuture"]

R = TypeVar("R")


def _nothing() -> None:
    pass


class IsolateFuture(concurrent.futures.Future[R]):
    """The pending result of work submitted to another isolate.

    ``await future`` inside asyncio code, or ``future.result(timeout=None)``
    in a plain script; both give the result or raise what the work raised.
    The work is already running: the future only observes it.

    Differences from Dart: Dart's ``Future`` cannot be cancelled; this one
    can, with :meth:`cancel`.
    """

    __module__ = "rayisolates"

    _making = threading.Lock()  # two threads must not each make a future's condition

    def __init__(self, what: str = "the computation", stop: Callable[[], None] = _nothing):
        """A future that its maker completes (``set_result`` / ``set_exception``).

        ``Future.__init__`` is not called: its ``Condition`` (11 objects with
        its lock's bound methods) is made only when someone waits, adds a
        callback (``await`` does) or cancels before the future is settled.
        Thousands of futures may be pending at once (a pool's tasks, a
        worker's calls), and every object they keep is one more for each
        full garbage collection to go through.

        Args:
            what: Names the work in messages.
            stop: Stops the work when the future is cancelled before it is done.
        """
        self._state = "PENDING"
        self._result: Any = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []
        self._what = what
        self._stop = stop
        self._ref: ray.ObjectRef | None = None

    @property
    def _condition(self) -> threading.Condition:
        made: threading.Condition | None = self.__dict__.get("_made_condition")
        if made is None:
            with IsolateFuture._making:
                made = self.__dict__.setdefault("_made_condition", threading.Condition())
        return made

    @_condition.setter
    def _condition(self, condition: threading.Condition) -> None:
        """Settable, as ``Future``'s attribute is (typeshed's protocols for
        ``as_completed`` and ``wait`` name it as an attribute)."""
        with IsolateFuture._making:
            self.__dict__["_made_condition"] = condition

    def set_result(self, result: R) -> None:
        """As ``Future.set_result`` (see :meth:`_settled_light`)."""
        if not self._settled_light("_result", result):
            super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        """As ``Future.set_exception`` (see :meth:`_settled_light`)."""
        if not self._settled_light("_exception", exception):
            super().set_exception(exception)

    def _settled_light(self, field: str, value: Any) -> bool:
        """Settle without the condition, if nobody has made it: then nobody waits on it
        nor has added a callback (both make it). Done under ``_making``, so a thread
        making the condition meanwhile finds the future done. ``False``: settle the
        usual way."""
        with IsolateFuture._making:
            if "_made_condition" in self.__dict__:
                return False
            if self._state != "PENDING":
                raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
            setattr(self, field, value)
            self._state = "FINISHED"
            return True

    @classmethod
    def of_ref(cls, ref: ray.ObjectRef, what: str) -> IsolateFuture[R]:
        """The future of an ``Isolate.run`` task: its Ray object, once it is ready.

        Cancelling it stops the task by ending the worker process that runs
        it (Ray's forced cancel), so even a blocking call ends.
        """
        future: IsolateFuture[R] = cls(what, lambda: ray.cancel(ref, force=True))
        future._ref = ref

        def ready(done: concurrent.futures.Future[Any]) -> None:
            try:
                value = done.result()
            except BaseException as error:
                future._ray_failed(error)
            else:
                future._ray_value(value)

        when_done(ref.future(), ready)
        return future

    @classmethod
    def following(
        cls, call: concurrent.futures.Future[R], what: str, undo: Callable[[R], None]
    ) -> IsolateFuture[R]:
        """The future of a call this library makes (and repeats) itself, such as a spawn.

        A Ray error the call ends with is translated (``_errors.from_ray``).

        Args:
            call: The call's result.
            what: Names the work in messages.
            undo: Undoes the work if it completes after all, the future
                having been cancelled (ends an isolate that starts late).
        """
        future: IsolateFuture[R] = cls(what)

        def completed(done: concurrent.futures.Future[R]) -> None:
            if done.cancelled():
                future.cancel()
            elif (error := done.exception()) is not None:
                cancelled = concurrent.futures.CancelledError
                future._fail(from_ray(error, cancelled=cancelled, what=what))
            elif future.cancelled():
                undo(done.result())
            else:
                future._succeed(done.result())

        call.add_done_callback(completed)
        return future

    def _ray_value(self, value: R) -> None:
        """The ``Isolate.run`` task's value (kept with its ref, to pass on without a copy)."""
        assert self._ref is not None
        remember(value, self._ref)
        self._succeed(value)

    def _ray_failed(self, error: BaseException) -> None:
        """The ``Isolate.run`` task failed: as our error, never Ray's."""
        self._fail(from_ray(error, cancelled=concurrent.futures.CancelledError, what=self._what))

    def _succeed(self, value: R) -> None:
        """Complete with ``value``, unless cancelled meanwhile."""
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self.set_result(value)

    def _fail(self, error: BaseException) -> None:
        """Complete with ``error``, unless cancelled meanwhile."""
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self.set_exception(error)

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
        if self._state == "FINISHED" and self._exception is None:  # final once FINISHED
            return self._result  # type: ignore[no-any-return]
        if self._ref is not None and not self.done():
            self._get(timeout)  # in this thread: no hop through ours
        try:
            return super().result(timeout)
        except TimeoutError:
            if self.done():
                raise  # the work's own (a pool task past its timeout)
            raise TimeoutError(f"{self._what} did not finish in time") from None

    def _get(self, timeout: float | None) -> None:
        """Wait for an ``Isolate.run`` task's object right here, and complete with it."""
        assert self._ref is not None
        try:
            self._ray_value(ray.get(self._ref, timeout=timeout))
        except ray_errors.GetTimeoutError:
            pass  # result() says it ran out
        except ray_errors.RayError as error:
            self._ray_failed(error)

    def __await__(self) -> Generator[Any, None, R]:
        return self._awaited().__await__()

    async def _awaited(self) -> R:
        if self._ref is not None and not self.done():
            try:  # on this loop: no hop through a thread of ours
                self._ray_value(await self._ref)
            except ray_errors.RayError as error:
                self._ray_failed(error)
        return await asyncio.wrap_future(self)

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
        if self.cancelled():
            return True
        if not super().cancel():
            return False
        self._stop()
        return True

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled() else ("done" if self.done() else "pending")
        return f"<IsolateFuture {self._what} {state}>"
