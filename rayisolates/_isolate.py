"""The ``Isolate`` class: Dart's entry point for running work in other isolates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from . import _run
from ._future import IsolateFuture

__all__ = ["Isolate"]

R = TypeVar("R")


class Isolate:
    """An isolated worker with its own memory and event loop, hosted by Ray.

    ``Isolate.run`` runs one function in a fresh isolate (a Ray task) and
    returns its result.
    """

    __module__ = "rayisolates"

    @overload
    @staticmethod
    def run(
        fn: Callable[..., Awaitable[R]], *args: Any, debug_name: str | None = None, **options: Any
    ) -> IsolateFuture[R]: ...

    @overload
    @staticmethod
    def run(
        fn: Callable[..., R], *args: Any, debug_name: str | None = None, **options: Any
    ) -> IsolateFuture[R]: ...

    @staticmethod
    def run(
        fn: Callable[..., Any], *args: Any, debug_name: str | None = None, **options: Any
    ) -> IsolateFuture[Any]:
        """Run ``fn(*args)`` once in another isolate and return its future result.

        The work is submitted at once. ``fn`` may be a module-level function, a
        closure or lambda (pickled by value), or an ``async def`` (awaited in the
        worker on an event loop of its own).

        Args:
            fn: The computation.
            *args: Its arguments; each must be picklable. Large ones (numpy
                arrays above all) travel through Ray's object store.
            debug_name: Names the run in Ray's dashboard, state API and logs.
            **options: Ray task options: ``num_cpus`` (default 1), ``num_gpus``,
                ``memory``, ``resources``, ``scheduling_strategy``,
                ``runtime_env``, ``max_retries`` (default 0), ``retry_exceptions``
                and Ray's other placement options.

        Returns:
            An :class:`IsolateFuture`: ``await`` it, or call ``.result()``.

        Raises:
            TypeError: ``fn`` is not callable, an option is unknown, or ``fn`` or
                an argument cannot be pickled (the message names which).

        The future raises what ``fn`` raised, as its own type with the remote
        traceback as a note; ``RemoteError`` if the exception cannot be rebuilt or
        the worker died without a result.

        Differences from Dart: ``fn`` receives ``args`` (Dart's takes none); Ray
        options choose where it runs; the future can be cancelled. A run is not
        retried after a worker crash unless ``max_retries`` says so (Ray's own
        default is 3).
        """
        return _run.run(fn, *args, debug_name=debug_name, **options)
