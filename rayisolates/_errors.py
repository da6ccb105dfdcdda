"""Exceptions raised by rayisolates, and the one place Ray's errors are translated.

The tree of errors this library raises itself::

    IsolateError                 root: every failure of rayisolates itself
    ├── RemoteError              an error that happened in another isolate and
    │                            could not be re-raised as its own type, or an
    │                            isolate that ended without producing a result
    └── IsolateSpawnException    an isolate could not be started

Errors raised by user code inside an isolate reach the caller as their own
type, with the remote traceback attached as a PEP 678 note. Cancellation is
``asyncio.CancelledError`` when awaited and ``concurrent.futures.CancelledError``
from ``.result()``; a timeout is ``TimeoutError``. No ``ray.exceptions.*``
reaches user code: :func:`from_ray` turns them into the above.
"""

from __future__ import annotations

import pickle
import re
from typing import Any

from ray import exceptions as ray_errors

__all__ = [
    "IsolateError",
    "IsolateExit",
    "IsolateSpawnException",
    "RemoteError",
    "from_ray",
    "start_failure",
]

ENDED_WITHOUT_RESULT = "Computation ended without result"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class IsolateExit(BaseException):
    """Unwinds the code that called ``Isolate.exit``; the isolate is ending (not public)."""


class IsolateError(Exception):
    """Root of every error raised by rayisolates itself (not by user code)."""

    __module__ = "rayisolates"


class RemoteError(IsolateError):
    """An error from another isolate that cannot be re-raised as its own type.

    Raised when an isolate ends without a result (its process died, its node
    was lost) or when the remote exception could not be rebuilt here.

    Args:
        description: What went wrong, as Dart's ``RemoteError.toString()``.
        stack_trace: The remote stack as text; empty when there was none.
    """

    __module__ = "rayisolates"

    def __init__(self, description: str, stack_trace: str = "") -> None:
        super().__init__(description)
        self.description = description
        self.stack_trace = stack_trace

    def __reduce__(self) -> tuple[type[RemoteError], tuple[str, str]]:
        return (type(self), (self.description, self.stack_trace))

    def __str__(self) -> str:
        return self.description


class IsolateSpawnException(IsolateError):
    """An isolate could not be started; the cause is chained as ``__cause__``.

    The cause survives the trip from the isolate that failed to start.
    """

    __module__ = "rayisolates"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.args, {"cause": _portable_cause(self.__cause__)})

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        self.__cause__ = (state or {}).get("cause")


def _portable_cause(cause: BaseException | None) -> BaseException | None:
    if cause is None:
        return None
    try:
        pickle.loads(pickle.dumps(cause))
    except Exception:
        return RemoteError(f"{type(cause).__qualname__}: {cause}")
    return cause


def _plain(text: str) -> str:
    return _ANSI.sub("", text)


def from_ray(
    error: BaseException, *, cancelled: type[BaseException], what: str = "the computation"
) -> BaseException:
    """The exception user code should see in place of a Ray failure.

    Args:
        error: What Ray raised.
        cancelled: The cancellation type for the calling context.
        what: Names the work that failed, for messages.

    Returns:
        The user's own exception, a cancellation, a ``TimeoutError``, a
        ``RemoteError``, or ``error`` itself when it is not Ray's.
    """
    if isinstance(error, ray_errors.TaskCancelledError):
        return cancelled()
    if isinstance(error, ray_errors.RayTaskError):
        cause: BaseException | None = error.cause
        if isinstance(cause, ray_errors.TaskCancelledError):
            return cancelled()
        if isinstance(cause, ray_errors.RayError) or cause is None:
            return RemoteError(f"{what} failed: {_plain(str(cause or error))}", _plain(str(error)))
        if not getattr(cause, "__notes__", None):
            # Raised outside the isolate's own code (e.g. pickling its result):
            # Ray's rendering is the only traceback there is.
            cause.add_note(_plain(str(error)))
        return cause
    if isinstance(error, ray_errors.GetTimeoutError):
        return TimeoutError(f"{what} did not finish in time")
    if isinstance(error, ray_errors.RayError):
        return RemoteError(f"{ENDED_WITHOUT_RESULT}: {_reason(error)}")
    return error


def start_failure(
    error: BaseException, name: str, *, cancelled: type[BaseException]
) -> BaseException:
    """What a spawn raises when starting isolate ``name`` failed with Ray's ``error``: the
    ``IsolateSpawnException`` its host raised (the entry point could not load), or one
    naming the isolate, with the failure (:func:`from_ray`) as its cause."""
    cause = from_ray(error, cancelled=cancelled, what="starting the isolate")
    if isinstance(cause, IsolateSpawnException):
        return cause
    failure = IsolateSpawnException(f"isolate {name!r} could not start: {cause}")
    failure.__cause__ = cause
    return failure


def _reason(error: BaseException) -> str:
    if isinstance(error, ray_errors.WorkerCrashedError):
        return "the worker process running it died"
    if isinstance(error, ray_errors.NodeDiedError):
        return "the node running it was lost"
    if isinstance(error, ray_errors.ActorDiedError | ray_errors.ActorUnavailableError):
        return "the isolate running it died"
    if isinstance(error, ray_errors.OutOfMemoryError):
        return "the worker was killed for using too much memory"
    if isinstance(error, ray_errors.ObjectLostError):
        return "its result was lost with the process that held it"
    first_line = _plain(str(error)).strip().splitlines()
    return first_line[0] if first_line else type(error).__name__
