"""The isolate a process is: its ports, outbox, inbox, and the loop they run on.

Every process that uses ports has exactly one context, made on first use:

- in a spawned isolate (a host actor), the host installs a ``HostContext``;
- in the driver, a ``MainContext`` (the main isolate) starts on first use;
- in any other Ray worker (an ``Isolate.run`` computation, say), a
  ``SendOnlyContext`` can send but not receive.

Control messages (pause, resume, ping, error listeners, kill) act on the
context's loop through :meth:`Context.apply_control`.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import ray

from ._capability import Capability
from ._codec import encode
from ._inbox import Inbox, Message, decode
from ._loop import BackgroundLoop
from ._outbox import Outbox
from ._runtime import ensure_started, on_shutdown

if TYPE_CHECKING:
    from ._codec import Item
    from ._isolate import Isolate
    from ._ports import SendPort, _Port

__all__ = [
    "CONTROL_PORT",
    "SUPERVISOR",
    "Context",
    "SendOnlyContext",
    "current",
    "forget",
    "install",
    "is_main",
    "is_spawned",
    "new_id",
    "peek",
]

CONTROL_PORT = 0  # port id of every isolate's control port
SUPERVISOR = "supervisor"  # destination key of the supervisor's own control channel

_current: Context | None = None
_lock = threading.Lock()


def new_id(kind: str) -> str:
    """A fresh isolate id: ``"main-..."``, ``"isolate-..."`` or ``"worker-..."``."""
    return f"{kind}-{uuid.uuid4().hex}"


def is_main(isolate_id: str) -> bool:
    """Whether ``isolate_id`` names a main isolate (a driver)."""
    return isolate_id.startswith("main-")


def is_spawned(isolate_id: str) -> bool:
    """Whether ``isolate_id`` names a spawned isolate (a host actor)."""
    return isolate_id.startswith("isolate-")


def forget(reference: Any) -> None:
    """Fire and forget a Ray call: its failure (a dead isolate) is expected and ignored."""
    reference.future().add_done_callback(lambda done: done.exception())


class Context:
    """What every isolate has: ports, an outbox, an inbox, capabilities.

    Args:
        isolate_id: This isolate's id (also its sender id).
        route: The Ray actor handle that receives this isolate's messages.
        loop: The loop that dispatches messages and flushes the outbox.
    """

    debug_name: str | None = None

    def __init__(self, isolate_id: str, route: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.isolate_id = isolate_id
        self.route = route
        self.loop = loop
        self.outbox = Outbox(
            isolate_id,
            loop,
            own_id=isolate_id,
            local=self._receive_local,
            opened=self.destination_opened,
            confirming=self.received_from,
            replied=self.replies_received,
        )
        self.inbox = Inbox(self.dispatch)
        self.supervisor: Any = None
        self.pause_capability = Capability()
        self.terminate_capability = Capability()
        self.errors_are_fatal = False
        self.error_listeners: set[SendPort[Any]] = set()
        self._ports: dict[int, _Port[Any]] = {}
        self._keep_alive: set[int] = set()
        self._next_port = CONTROL_PORT + 1
        self._lock = threading.Lock()
        self._control_seq: dict[str, int] = {}
        self._pauses: set[Capability] = set()
        self._held: list[list[Message]] = []

    # Ports -----------------------------------------------------------------

    def open_port(self, port: _Port[Any], keep_alive: bool) -> int:
        """Register ``port``; returns its id."""
        with self._lock:
            port_id = self._next_port
            self._next_port += 1
            self._ports[port_id] = port
            if keep_alive:
                self._keep_alive.add(port_id)
        return port_id

    def close_port(self, port_id: int) -> None:
        """Forget a closed port: later messages to it are dropped."""
        with self._lock:
            self._ports.pop(port_id, None)
            self._keep_alive.discard(port_id)
        self.ports_changed()

    def set_keep_alive(self, port_id: int, keep: bool) -> None:
        """Whether the open port ``port_id`` keeps this isolate alive."""
        with self._lock:
            if not keep:
                self._keep_alive.discard(port_id)
            elif port_id in self._ports:
                self._keep_alive.add(port_id)
        self.ports_changed()

    def ports_changed(self) -> None:
        """Hook: the ports keeping the isolate alive may have changed."""

    @property
    def keeps_alive(self) -> bool:
        """Whether an open port keeps this isolate alive."""
        return bool(self._keep_alive)

    def consumer_loop(self) -> asyncio.AbstractEventLoop:
        """The loop that should run callbacks registered now."""
        return asyncio._get_running_loop() or self.loop

    # Sending ---------------------------------------------------------------

    def send(self, port: SendPort[Any], message: Any) -> None:
        """Encode ``message`` now and queue it for ``port``'s isolate."""
        self.outbox.add(port.isolate_id, port.route, (port.port_id, *encode(message)))

    def send_item(self, port: SendPort[Any], item: tuple[int, Any, Any]) -> None:
        """Queue an already encoded message ``(kind, payload, refs)`` for ``port``."""
        self.outbox.add(port.isolate_id, port.route, (port.port_id, *item))

    def destination_opened(self, destination: str, route: Any) -> None:
        """Hook: this isolate sends to ``destination`` for the first time."""

    def received_from(self, destination: str) -> int | None:
        """Hook: what to confirm to ``destination`` with each batch (main isolate only)."""
        return None

    def replies_received(
        self, destination: str, batches: list[tuple[str, int, list[Item]]]
    ) -> None:
        """Hook: batches ``destination`` returned from a deliver (main isolate only)."""

    def spawned(self, isolate: Isolate) -> None:
        """Hook: an isolate this process asked for has started."""

    def control(self, route: Any, destination: str, action: str, *args: Any) -> Any:
        """Send a control message; those from one isolate to one destination act in order.

        Returns:
            The Ray reference of the call: done once the destination took it.
        """
        with self._lock:
            seq = self._control_seq.get(destination, 0)
            self._control_seq[destination] = seq + 1
        reference = route.control.remote(self.isolate_id, seq, action, args)
        forget(reference)
        return reference

    def supervisor_handle(self) -> Any:
        """The main isolate's supervisor (creates isolates, keeps exit listeners)."""
        if self.supervisor is None:
            from ._supervisor import supervisor_name

            name = supervisor_name(ray.get_runtime_context().get_job_id())
            try:
                self.supervisor = ray.get_actor(name)
            except ValueError:
                raise RuntimeError(
                    "no main isolate runs in this Ray job yet: spawn isolates from a driver "
                    "that uses rayisolates (or from isolates it spawned)"
                ) from None
        return self.supervisor

    def supervise(self, action: str, *args: Any) -> None:
        """An ordered request to the supervisor (exit listeners, immediate kills)."""
        self.control(self.supervisor_handle(), SUPERVISOR, action, *args)

    def listen_for_exit(self, control_port: SendPort[Any], action: str, *args: Any) -> None:
        """Add or remove an exit listener, in order with other control messages.

        The isolate passes it on to the supervisor, which keeps exit listeners
        (they must outlive the isolate). If the isolate has already ended, the
        supervisor is told directly.
        """
        isolate_id = control_port.isolate_id
        if is_main(isolate_id):
            return  # the main isolate ends with the program: nobody is left to tell
        reference = self.control(control_port.route, isolate_id, action, isolate_id, *args)

        def ended_already(done: Any) -> None:
            if isinstance(done.exception(), ray.exceptions.RayActorError):
                self.supervise(action, isolate_id, *args)

        reference.future().add_done_callback(ended_already)

    def kill_now(self, control_port: SendPort[Any], capability: Capability) -> None:
        """End an isolate's process at once (the main isolate: interrupt it)."""
        if is_main(control_port.isolate_id):
            self.control(control_port.route, control_port.isolate_id, "kill", capability)
        else:
            self.supervise("kill_now", control_port.isolate_id, capability)

    # Receiving -------------------------------------------------------------

    async def deliver(self, sender: str, seq: int, items: list[Item]) -> None:
        """Take one batch from ``sender``: decode it, then dispatch in order."""
        self.receive(sender, seq, await decode(items))

    def receive(self, sender: str, seq: int, messages: list[Message]) -> None:
        """Put a decoded batch in order and dispatch what is ready."""
        self.inbox.receive(sender, seq, messages)

    def _receive_local(self, sender: str, seq: int, items: list[Item]) -> None:
        asyncio.run_coroutine_threadsafe(self.deliver(sender, seq, items), self.loop)

    def dispatch(self, messages: list[Message]) -> None:
        """Hand in-order messages to their ports (runs on ``self.loop``)."""
        if self._pauses:
            self._held.append(messages)
            return
        ports = self._ports
        start = 0
        while start < len(messages):
            port_id = messages[start][0]
            end = start + 1
            while end < len(messages) and messages[end][0] == port_id:
                end += 1
            port = ports.get(port_id)
            if port is not None:
                port._deliver([message for _, message in messages[start:end]])
            elif port_id == CONTROL_PORT and self.accepts_control_messages():
                for _, (action, args) in messages[start:end]:
                    self.apply_control(action, args)
            start = end

    def accepts_control_messages(self) -> bool:
        """Whether control messages reach this isolate through its inbox."""
        return False

    # Control ---------------------------------------------------------------

    def apply_control(self, action: str, args: tuple[Any, ...]) -> None:
        """Act on one control message (on ``self.loop``)."""
        handler: Callable[..., None] | None = getattr(self, f"_on_{action}", None)
        if handler is not None:
            handler(*args)

    def _on_kill(self, capability: Capability) -> None:
        if capability == self.terminate_capability:
            self.kill()

    def _on_pause(self, pause: Capability, resume: Capability) -> None:
        if pause == self.pause_capability:
            self.pause(resume)

    def _on_resume(self, pause: Capability, resume: Capability) -> None:
        if pause == self.pause_capability:
            self.resume(resume)

    def _on_ping(self, port: SendPort[Any], response: tuple[int, Any, Any], _: bool) -> None:
        self.send_item(port, response)

    def _on_add_error_listener(self, port: SendPort[Any]) -> None:
        self.error_listeners.add(port)

    def _on_remove_error_listener(self, port: SendPort[Any]) -> None:
        self.error_listeners.discard(port)

    def _on_set_errors_fatal(self, capability: Capability, fatal: bool) -> None:
        if capability == self.terminate_capability:
            self.errors_are_fatal = fatal

    def kill(self) -> None:
        """End this isolate (kill with ``BEFORE_NEXT_EVENT``)."""

    def pause(self, capability: Capability) -> None:
        """Hold port messages until every pause capability is resumed."""
        self._pauses.add(capability)

    def resume(self, capability: Capability) -> None:
        """Lift the pause made with ``capability``; held messages follow in order."""
        self._pauses.discard(capability)
        if self._pauses:
            return
        held, self._held = self._held, []
        for messages in held:
            self.dispatch(messages)

    # Being an isolate -------------------------------------------------------

    def current_isolate(self) -> Isolate:
        """The handle ``Isolate.current()`` returns here."""
        from ._isolate import Isolate
        from ._ports import SendPort

        control: SendPort[Any] = SendPort(self.isolate_id, CONTROL_PORT, self.route)
        return Isolate.spawned(
            control, self.pause_capability, self.terminate_capability, self.debug_name
        )

    def exit(self, port: SendPort[Any] | None, message: Any) -> NoReturn:
        """``Isolate.exit`` here."""
        raise RuntimeError(
            "Isolate.exit() ends an isolate started with Isolate.spawn; the main isolate "
            "and Isolate.run computations end by returning"
        )

    def guarded(self, callback: Callable[..., object], *args: Any) -> None:
        """Run a port callback; what it raises is an uncaught error of this isolate."""
        try:
            callback(*args)
        except Exception as error:
            self.uncaught(error)

    def uncaught(self, error: BaseException) -> None:
        """An error no code of the isolate caught: to error listeners, or printed."""
        stack = "".join(traceback.format_exception(error))
        report = [str(error), stack]
        for port in list(self.error_listeners):
            self.send(port, report)
        if not self.error_listeners:
            name = self.debug_name or self.isolate_id
            print(f"Uncaught error in isolate {name}:\n{stack}", file=sys.stderr, end="")
        if self.errors_are_fatal:
            self.end_by_error(report)

    def end_by_error(self, report: list[str]) -> None:
        """An uncaught error was fatal."""

    def close(self) -> None:
        """Release what this context started (at ``rayisolates.shutdown()``)."""


class SendOnlyContext(Context):
    """A Ray worker that is not an isolate host: it can send, not receive."""

    def __init__(self) -> None:
        self._background = BackgroundLoop("rayisolates-sender")
        super().__init__(new_id("worker"), None, self._background.loop)

    def open_port(self, port: _Port[Any], keep_alive: bool) -> int:
        raise RuntimeError(
            "ports can only receive in the main isolate or in an isolate started with "
            "Isolate.spawn; an Isolate.run computation can send but not receive"
        )

    def current_isolate(self) -> Isolate:
        raise RuntimeError(
            "an Isolate.run computation is a Ray task, not an isolate with a control port; "
            "Isolate.current() works in the main isolate and in spawned isolates"
        )

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until everything sent from this process is acknowledged."""
        self._background.submit(self.outbox.drain()).result(timeout)

    def close(self) -> None:
        self._background.stop()


def install(context: Context) -> None:
    """Make ``context`` this process's isolate (used by hosts)."""
    global _current
    _current = context


def peek() -> Context | None:
    """This process's context if it has one, without making it."""
    return _current


def current() -> Context:
    """This process's isolate context, made on first use."""
    context = _current
    if context is not None:
        return context
    with _lock:
        if _current is None:
            ensure_started()
            if ray._private.worker.global_worker.mode == ray.SCRIPT_MODE:
                from ._main import MainContext

                made: Context = MainContext()
            else:
                made = SendOnlyContext()
            install(made)
            on_shutdown(_forget)
        assert _current is not None
        return _current


def _forget() -> None:
    global _current
    context, _current = _current, None
    if context is not None:
        context.close()
