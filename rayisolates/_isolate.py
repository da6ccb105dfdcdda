"""The ``Isolate`` class: running work elsewhere, and the handle that controls an isolate."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ClassVar, NoReturn, TypeVar, overload

from . import _run, _spawn
from ._capability import Capability
from ._context.context import current
from ._errors import RemoteError
from ._future import IsolateFuture
from ._ports import ReceivePort
from ._sendport import SendPort
from ._stream import launch
from ._stream.consumer import IsolateStream
from ._transport.codec import encode
from ._transport.wire import (
    CONTROL_PORT,
    AddErrorListener,
    AddExitListener,
    Control,
    Kill,
    KillNow,
    Pause,
    Ping,
    RemoveErrorListener,
    RemoveExitListener,
    Resume,
    SetErrorsFatal,
    is_main,
)

__all__ = ["Isolate"]

R = TypeVar("R")
T = TypeVar("T")

_EXIT_NOTICE = ("rayisolates:isolate-ended",)  # the errors stream's exit listener


class Isolate:
    """An isolated worker with its own memory and event loop, hosted by Ray.

    ``Isolate.run`` runs one function in a fresh isolate (a Ray task);
    ``Isolate.spawn`` starts a long-lived isolate (a Ray actor) and returns
    this handle to it. A handle controls its isolate through the control
    port; operations that need a capability the handle lacks do nothing, as
    in Dart. Handles are picklable: sent to any isolate on any node, they work
    there.
    """

    __module__ = "rayisolates"

    IMMEDIATE: ClassVar[int] = 0
    BEFORE_NEXT_EVENT: ClassVar[int] = 1

    def __init__(
        self,
        control_port: SendPort[Any],
        pause_capability: Capability | None = None,
        terminate_capability: Capability | None = None,
    ) -> None:
        if not isinstance(control_port, SendPort):
            raise TypeError(f"Isolate() needs a control port (a SendPort), got {control_port!r}")
        self.control_port = control_port
        self.pause_capability = pause_capability
        self.terminate_capability = terminate_capability
        self._debug_name: str | None = None

    @classmethod
    def _handle(
        cls,
        control_port: SendPort[Any],
        pause_capability: Capability | None,
        terminate_capability: Capability | None,
        debug_name: str | None,
    ) -> Isolate:
        """A handle with the isolate's debug name (made by spawn, ``current`` and unpickling)."""
        isolate = cls(control_port, pause_capability, terminate_capability)
        isolate._debug_name = debug_name
        return isolate

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (
            Isolate._handle,
            (self.control_port, self.pause_capability, self.terminate_capability, self.debug_name),
        )

    @property
    def debug_name(self) -> str | None:
        """The name given at spawn (``None`` for handles made with the constructor)."""
        return self._debug_name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Isolate):
            return NotImplemented
        return self.control_port == other.control_port

    def __hash__(self) -> int:
        return hash(self.control_port)

    def __repr__(self) -> str:
        name = f" {self._debug_name!r}" if self._debug_name else ""
        return f"<Isolate{name} {self.control_port.isolate_id}>"

    # Running and spawning -------------------------------------------------

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

    @staticmethod
    def stream(
        fn: Callable[..., Iterator[T] | AsyncIterator[T]],
        *args: Any,
        buffer: int = 16,
        debug_name: str | None = None,
        **options: Any,
    ) -> IsolateStream[T]:
        """Run the generator ``fn(*args)`` in a new isolate; its items as they come.

        ``fn`` is a generator function or an async generator function (or
        returns an iterator). The result is an iterator and an async
        iterator of the items.

        Args:
            fn: The producer (pickled by value if it is a closure or lambda).
            *args: Its arguments, copied as by ``SendPort.send``.
            buffer: The most items produced and not yet taken: the producer
                waits at its ``yield`` until the consumer catches up.
            debug_name: Names the producing isolate.
            **options: Ray actor options for it, as for ``spawn`` (none: an
                isolate from ``init(isolate_pool=...)`` when one is ready).

        Raises:
            TypeError: ``fn`` is not callable, or it or an argument cannot be
                sent (named); nothing was started.
            ValueError: ``buffer`` is not a positive int.

        The stream raises what ``fn`` raised, after the items yielded before
        it, as its own type with the remote stack; ``RemoteError`` if the
        producer died. ``break``, ``close()`` / ``await aclose()`` or
        dropping the stream stop the producer: a generator waiting at
        ``yield`` runs its ``finally``; one stuck in sync code is ended by
        force after a few seconds.

        Differences from Dart: Dart has no streaming ``Isolate.run``; its
        samples forward neither backpressure nor cancellation.
        """
        return launch.stream(fn, *args, buffer=buffer, debug_name=debug_name, **options)

    spawn = staticmethod(_spawn.spawn)
    spawn_uri = staticmethod(_spawn.spawn_uri)

    @staticmethod
    def current() -> Isolate:
        """A handle to the isolate this code runs in (the main isolate in the driver).

        Raises:
            RuntimeError: Called inside an ``Isolate.run`` computation, which
                is a Ray task, not an isolate with ports.
        """
        context = current()
        pause, terminate = context.capabilities()
        control: SendPort[Any] = SendPort(context.isolate_id, CONTROL_PORT, context.route)
        return Isolate._handle(control, pause, terminate, context.debug_name)

    @staticmethod
    def exit(port: SendPort[Any] | None = None, message: Any = None) -> NoReturn:
        """End the current isolate, after delivering ``message`` to ``port``.

        Everything the isolate sent before arrives first; ``message`` arrives
        last, then exit listeners fire. A large message (numpy arrays above
        all) is handed over through Ray's object store and read by the
        receiver without another copy; it outlives this isolate.

        Raises:
            TypeError: ``message`` cannot be sent; the isolate does not exit.
            RuntimeError: Called in the main isolate or an ``Isolate.run``
                computation (end those by returning).

        Differences from Dart: in the main isolate, end the program by
        returning from it (or ``sys.exit``) instead.
        """
        current().exit(port, message)

    # Control ----------------------------------------------------------------

    def _control(self, record: Control) -> None:
        current().control(self.control_port, record)

    def kill(self, priority: int = BEFORE_NEXT_EVENT) -> None:
        """End the isolate; needs :attr:`terminate_capability`.

        With ``BEFORE_NEXT_EVENT`` it ends once the event it is handling
        returns (messages it sent are still delivered). With ``IMMEDIATE``
        its process ends at once, even in the middle of a long synchronous
        call. Exit listeners fire either way.
        """
        capability = self.terminate_capability
        if capability is None:
            return
        isolate_id = self.control_port.isolate_id
        if is_main(isolate_id):
            self._control(Kill(isolate_id, capability))
        elif priority == Isolate.IMMEDIATE:
            current().supervise(KillNow(isolate_id, capability))
        else:  # through the supervisor, after exit-listener changes sent before it
            current().supervise(Kill(isolate_id, capability))

    def pause(self, resume_capability: Capability | None = None) -> Capability:
        """Pause the isolate's port events; needs :attr:`pause_capability`.

        Messages queue while paused and are delivered in order on resume;
        control messages (ping, kill, ...) still act. Pauses made with
        different capabilities each need their own resume; pausing twice with
        the same one needs one resume.

        Returns:
            The capability to pass to :meth:`resume`.
        """
        resume_capability = resume_capability or Capability()
        if self.pause_capability is not None:
            self._control(Pause(self.pause_capability, resume_capability))
        return resume_capability

    def resume(self, capability: Capability) -> None:
        """Lift the pause made with ``capability`` (a wrong one does nothing)."""
        if self.pause_capability is not None:
            self._control(Resume(self.pause_capability, capability))

    def ping(self, port: SendPort[Any], response: Any = None, priority: int = IMMEDIATE) -> None:
        """Ask the isolate to send ``response`` to ``port``: proof that it is alive.

        ``IMMEDIATE`` answers even while the isolate is paused or busy;
        ``BEFORE_NEXT_EVENT`` answers once the current event is handled.
        """
        response_item = encode(response, "Isolate.ping()", store=False)
        self._control(Ping(port, response_item, priority == Isolate.IMMEDIATE))

    def add_on_exit_listener(self, port: SendPort[Any], response: Any = None) -> None:
        """Send ``response`` to ``port`` once the isolate ends, however it ends.

        Differences from Dart: if the isolate has already ended, ``response``
        is sent at once (Dart sends nothing), so a listener added late cannot
        wait forever.
        """
        response_item = encode(response, "Isolate.add_on_exit_listener()", store=False)
        isolate_id = self.control_port.isolate_id
        if not is_main(isolate_id):  # the main isolate ends with the program: nobody is told
            current().supervise(AddExitListener(isolate_id, port, response_item))

    def remove_on_exit_listener(self, port: SendPort[Any]) -> None:
        """Stop sending the exit response to ``port``."""
        isolate_id = self.control_port.isolate_id
        if not is_main(isolate_id):
            current().supervise(RemoveExitListener(isolate_id, port))

    def add_error_listener(self, port: SendPort[Any]) -> None:
        """Send each uncaught error of the isolate to ``port`` as ``[str(error), stack]``."""
        self._control(AddErrorListener(port))

    def remove_error_listener(self, port: SendPort[Any]) -> None:
        """Stop sending uncaught errors to ``port``."""
        self._control(RemoveErrorListener(port))

    def set_errors_fatal(self, errors_are_fatal: bool) -> None:
        """Whether an uncaught error ends the isolate; needs :attr:`terminate_capability`."""
        if self.terminate_capability is not None:
            self._control(SetErrorsFatal(self.terminate_capability, errors_are_fatal))

    @property
    def errors(self) -> AsyncIterator[RemoteError]:
        """The isolate's uncaught errors from now on, as ``RemoteError``; ends when it ends.

        Listening starts when this property is read, so errors raised after
        that are not missed even before iteration begins.
        """
        return _ErrorStream(self)


class _ErrorStream:
    """``Isolate.errors``: an error listener and an exit listener on one port."""

    def __init__(self, isolate: Isolate) -> None:
        self._isolate = isolate
        self._port: ReceivePort[Any] = ReceivePort("errors")
        isolate.add_error_listener(self._port.send_port)
        isolate.add_on_exit_listener(self._port.send_port, _EXIT_NOTICE)

    def __aiter__(self) -> _ErrorStream:
        return self

    async def __anext__(self) -> RemoteError:
        if not self._port.is_closed:
            message: Any = await anext(self._port, _EXIT_NOTICE)
            if message != _EXIT_NOTICE:
                description, stack = message
                return RemoteError(description, stack)
            self.close()
        raise StopAsyncIteration

    def close(self) -> None:
        """Stop listening; idempotent."""
        if not self._port.is_closed:
            self._isolate.remove_error_listener(self._port.send_port)
            self._isolate.remove_on_exit_listener(self._port.send_port)
            self._port.close()
