"""``IsolateWorker``: the handle users hold, and how a worker is spawned.

See ``wire`` for the protocol, ``serve`` for the worker's side and
``calls`` for the caller's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

from .._errors import IsolateSpawnException, RemoteError
from .._future import IsolateFuture
from .._isolate import Isolate
from .._ports import RawReceivePort
from .._sendport import SendPort
from .._spawn import spawn as spawn_isolate
from .._stream.consumer import IsolateStream
from .._stream.launch import on_worker
from .._transport.codec import encode, open_encoded
from .._transport.sendable import refusal, unsendable_call, unsendable_part
from .._transport.wire import Encoded
from .calls import calls
from .serve import serve
from .wire import Failed, Mode, Ready

__all__ = ["DEFAULT_MAX_PARALLEL", "IsolateWorker"]

_FIELDS = frozenset({"_isolate", "_calls", "_kinds", "_class_name", "_closing"})
DEFAULT_MAX_PARALLEL = 1000  # as Ray's async actors: async calls interleave freely
STREAM_BUFFER = 16


def _arguments(action: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Encoded | None:
    """A call's arguments in travelling form, checked before anything is sent."""
    if not args and not kwargs:
        return None
    try:
        return encode((args, kwargs), action)
    except TypeError:
        labelled = [
            *((f"argument {i}", arg) for i, arg in enumerate(args)),
            *((f"keyword argument {key!r}", value) for key, value in kwargs.items()),
        ]
        part = next(
            (found for label, v in labelled if (found := unsendable_part(v, label)) is not None),
            "its arguments",
        )
        raise refusal(action, part, "nothing was sent") from None


class IsolateWorker:
    """An object living in its own isolate; its methods called as if it were here.

    Made by :meth:`spawn`. ``worker.name(*args, **kwargs)`` calls the
    object's method ``name`` in the worker's isolate and returns at once:

    - a plain or ``async def`` method gives an :class:`IsolateFuture` of its
      result (``await`` it, or ``.result()``);
    - a generator or async generator method gives an :class:`IsolateStream`
      of its items, with the stream's backpressure and cancellation.

    Calls from one caller start in the order made. Sync methods run one at a
    time (each holds the worker's event loop while it runs); ``async def``
    methods interleave, at most ``max_parallel`` calls running at once.

    Errors: what a method raises comes back as its own type, with the
    remote stack as a note (as for ``Isolate.run``). An argument that cannot
    be sent raises ``TypeError`` at the call, and nothing is sent. A worker
    that ends (crash, kill, node lost, closed) fails its pending and later
    calls with :class:`RemoteError`.

    A handle can be sent to any isolate on any node and called there; the
    answers go to the process that called. :attr:`isolate` is the worker's
    :class:`Isolate` (kill, pause, ping, exit and error listeners).
    ``close()``, ``await aclose()``, ``with`` and ``async with`` end the
    worker after the calls already made. Dropping a handle does not end
    the worker (other handles may live elsewhere). A sync method that waits
    for a call to its own worker waits forever: the loop that would run
    that call is the one waiting (``await`` it from an ``async def``
    method instead).

    Differences from Dart: Dart has no such class; its guide writes one by
    hand (``BackgroundWorker``). Cancelling a call's future drops its answer
    but does not interrupt the method (ending the isolate would end the
    object too).
    """

    __module__ = "rayisolates"

    def __init__(
        self,
        isolate: Isolate,
        calls_port: SendPort[Any],
        kinds: dict[str, str],
        class_name: str,
    ) -> None:
        """A handle to a running worker (made by :meth:`spawn` and by unpickling)."""
        self._isolate = isolate
        self._calls = calls_port
        self._kinds = kinds
        self._class_name = class_name
        self._closing = False

    @staticmethod
    def spawn(
        factory: Callable[..., Any],
        *args: Any,
        debug_name: str | None = None,
        max_parallel: int = DEFAULT_MAX_PARALLEL,
        **options: Any,
    ) -> IsolateFuture[IsolateWorker]:
        """Build ``factory(*args)`` in a new isolate; the future of its worker handle.

        Args:
            factory: A class or any callable giving the object (pickled by
                value if it is a lambda or local; use ``functools.partial``
                or a lambda for keyword arguments). It may be ``async def``.
            *args: Its arguments, copied as by ``SendPort.send``.
            debug_name: Names the isolate (default: the factory's name).
            max_parallel: The most calls running at once (``async def`` and
                generator methods interleave up to it; sync ones never
                overlap).
            **options: Ray actor options, as for ``Isolate.spawn``.

        Returns:
            An :class:`IsolateFuture` of the :class:`IsolateWorker`, done
            once the object is built. Cancelling it ends a worker that
            starts after all.

        Raises:
            IsolateSpawnException: ``factory`` or an argument cannot be
                sent (raised here), or the factory raised or the isolate
                could not start (raised by the future); the cause is chained.
            TypeError: An option is unknown.
            ValueError: ``max_parallel`` is not a positive int.
        """
        action = "IsolateWorker.spawn()"
        if not callable(factory):
            raise IsolateSpawnException(f"{action}: the factory {factory!r} is not callable")
        if not isinstance(max_parallel, int) or isinstance(max_parallel, bool) or max_parallel < 1:
            raise ValueError(
                f"{action}: max_parallel must be an int of 1 or more, got {max_parallel!r}"
            )
        try:
            work = encode((factory, args), action)
        except TypeError as error:
            part = unsendable_call(factory, args) or "the factory"
            raise IsolateSpawnException(
                str(refusal(action, part, "nothing was started"))
            ) from error
        name = debug_name or getattr(factory, "__qualname__", None) or "worker"
        result: IsolateFuture[IsolateWorker] = IsolateFuture(f"spawning worker {name}")
        announcements: RawReceivePort[Any] = RawReceivePort(debug_name="worker-spawn")
        spawned: list[Isolate] = []

        def announced(message: Any) -> None:
            announcements.close()
            if isinstance(message, Ready) and spawned:
                (isolate,) = spawned
                isolate.remove_on_exit_listener(announcements.send_port)
                if result.cancelled():  # nobody will hold it: end it
                    isolate.kill()
                result._succeed(
                    IsolateWorker(isolate, message.calls, message.kinds, message.class_name)
                )
                return
            if isinstance(message, Failed):
                try:
                    cause = open_encoded(message.error)
                except Exception as failure:  # a class this process lacks, say
                    cause = RemoteError(f"{type(failure).__name__}: {failure}")
                error = IsolateSpawnException(
                    f"{action}: the factory {name} raised {type(cause).__name__}: {cause}"
                )
                error.__cause__ = cause
            else:
                error = IsolateSpawnException(
                    f"{action}: the worker {name} ended before its object was built"
                )
            result._fail(error)

        try:
            spawning = spawn_isolate(
                serve,
                (announcements.send_port, work, max_parallel),
                on_exit=announcements.send_port,
                debug_name=name,
                **options,
            )
        except BaseException:
            announcements.close()
            raise

        def started(done: concurrent.futures.Future[Isolate]) -> None:
            error = done.exception()
            if error is not None:
                announcements.close()
                result._fail(error)
                return
            spawned.append(done.result())
            announcements.handler = announced  # Ready may have come before: it waited

        spawning.add_done_callback(started)
        return result

    # Calling -------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__") or name in _FIELDS:
            raise AttributeError(name)
        kind = self._kinds.get(name)
        if kind is None:
            raise AttributeError(f"{self._class_name!r} worker has no attribute {name!r}")
        if kind == "value":
            raise AttributeError(
                f"{self._class_name}.{name} is not a method; read it with worker.get({name!r})"
            )
        what = f"{self._class_name}.{name}()"
        method: Callable[..., Any]
        if kind in ("gen", "agen"):

            def method(*args: Any, **kwargs: Any) -> IsolateStream[Any]:
                return self._stream(what, name, args, kwargs)
        else:

            def method(*args: Any, **kwargs: Any) -> IsolateFuture[Any]:
                return self._call(what, name, "call", args, kwargs)

        method.__name__ = method.__qualname__ = name
        setattr(self, name, method)  # found without __getattr__ from now on
        return method

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the method ``name``, as ``worker.name(*args, **kwargs)`` does.

        For a method whose name the handle itself uses (``get``, ``call``,
        ``close``, ``aclose``, ``isolate``, ``spawn``), or a name held in a
        variable.

        Returns:
            An :class:`IsolateFuture`, or an :class:`IsolateStream` for a
            generator method.

        Raises:
            AttributeError: The object has no method ``name``.
        """
        method: Callable[..., Any] = IsolateWorker.__getattr__(self, name)
        return method(*args, **kwargs)

    def get(self, name: str) -> IsolateFuture[Any]:
        """Read the worker object's attribute ``name``: a future of its value.

        Raises:
            TypeError: ``name`` is not a str.
        """
        if not isinstance(name, str):
            raise TypeError(f"IsolateWorker.get() needs an attribute name (a str), got {name!r}")
        return self._call(f"{self._class_name}.{name}", name, "get", (), {})

    def _call(
        self, what: str, name: str, mode: Mode, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> IsolateFuture[Any]:
        encoded = _arguments(what, args, kwargs)
        if self._closing:
            return _failed(what, "the worker was closed")
        return calls().call(self._isolate, self._calls, what, name, mode, encoded)

    def _stream(
        self, what: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> IsolateStream[Any]:
        encoded = _arguments(what, args, kwargs)
        buffer = STREAM_BUFFER

        def submit(items: SendPort[Any]) -> concurrent.futures.Future[Any]:
            if self._closing:
                return _failed(what, "the worker was closed")
            return calls().call(
                self._isolate, self._calls, what, name, "stream", encoded, (items, buffer)
            )

        return on_worker(what, buffer, submit)

    # The isolate, closing ------------------------------------------------------------

    @property
    def isolate(self) -> Isolate:
        """The worker's isolate: kill, pause, ping, exit and error listeners."""
        return self._isolate

    def _close(self) -> concurrent.futures.Future[None]:
        self._closing = True
        return calls().close(self._isolate, self._calls)

    def close(self, timeout: float | None = None) -> None:
        """End the worker after the calls already made (by any caller); wait for its end.

        Calls made through this handle afterwards fail with ``RemoteError``;
        calls other processes make after the worker got the close fail too.
        Idempotent.

        Raises:
            TimeoutError: The worker had not ended after ``timeout`` seconds.
            RuntimeError: Called inside a running event loop (use ``aclose``).
        """
        if asyncio._get_running_loop() is not None:
            raise RuntimeError(
                "IsolateWorker.close() waits for the worker's calls and would block this "
                "event loop; use `await worker.aclose()` or `async with` here"
            )
        try:
            self._close().result(timeout)
        except TimeoutError:
            raise TimeoutError(f"the worker {self} had not ended after {timeout} s") from None

    async def aclose(self) -> None:
        """:meth:`close`, awaitable."""
        await asyncio.wrap_future(self._close())

    def __enter__(self) -> IsolateWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> IsolateWorker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # Travelling ----------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (IsolateWorker, (self._isolate, self._calls, self._kinds, self._class_name))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IsolateWorker):
            return NotImplemented
        return self._calls == other._calls

    def __hash__(self) -> int:
        return hash(self._calls)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._kinds})

    def __repr__(self) -> str:
        name = self._isolate.debug_name or self._isolate.control_port.isolate_id
        return f"<IsolateWorker {self._class_name} in {name!r}>"


def _failed(what: str, why: str) -> IsolateFuture[Any]:
    future: IsolateFuture[Any] = IsolateFuture(what)
    future._fail(RemoteError(f"{what}: {why}"))
    return future
