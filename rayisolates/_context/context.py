"""The isolate a process is, as the public API sees it; one per process, made on first use.

- In a spawned isolate, its host actor (``_host``) installs one.
- In the driver, the main isolate (``_main``) starts on first use.
- In any other Ray worker (an ``Isolate.run`` computation), a send-only
  one (``_worker``) can send but not receive.

A :class:`Context` puts together the pieces of one isolate (ports, sender,
receiver, errors, control actions) and its :class:`Runtime`: what differs
between the three kinds of process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import ray

from .._capability import Capability
from .._transport.codec import encode
from .._transport.mailbox import Mailbox
from .._transport.wire import (
    SUPERVISOR_NAMESPACE,
    Control,
    Encoded,
    SpawnRequest,
    supervisor_name,
)
from .connection import ensure_started, on_shutdown
from .controls import ControlActions
from .porttable import PortTable
from .receiver import Receiver
from .sender import Sender
from .uncaught import UncaughtErrors

if TYPE_CHECKING:
    from .._isolate import Isolate
    from .._sendport import SendPort
    from .._transport.direct import Endpoint
    from .metrics import MetricsExport

__all__ = ["Context", "Runtime", "current", "find_supervisor", "install", "peek"]

_current: Context | None = None
_lock = threading.Lock()


class Runtime(Protocol):
    """What differs between the main isolate, a spawned isolate and a send-only worker."""

    def exit(self, port: SendPort[Any] | None, message: Any) -> NoReturn:
        """``Isolate.exit`` here."""
        ...

    def spawned(self, isolate: Isolate) -> None:
        """An isolate this process asked for has started."""
        ...

    def spawn_leased(self, request: SpawnRequest) -> concurrent.futures.Future[Isolate] | None:
        """Start ``request`` in a warm host this process holds, or ``None`` (ask the
        supervisor)."""
        ...

    def close(self) -> None:
        """Release what the runtime started (at ``rayisolates.shutdown()``)."""
        ...


class Context:
    """One isolate's pieces, and the operations the public API needs of them.

    Put together by ``_runtime.assembly``. ``ports``, ``receiver`` and
    ``actions`` are ``None`` in a process that cannot receive (an
    ``Isolate.run`` computation); ``endpoint`` where it has no direct
    channels; ``metrics`` where its figures are not exported.
    """

    def __init__(
        self,
        isolate_id: str,
        route: Any,
        loop: asyncio.AbstractEventLoop,
        sender: Sender,
        errors: UncaughtErrors,
        runtime: Runtime,
        *,
        debug_name: str | None = None,
        ports: PortTable | None = None,
        receiver: Receiver | None = None,
        actions: ControlActions | None = None,
        endpoint: Endpoint | None = None,
        runs_on_own_loop: bool = False,
    ) -> None:
        self.isolate_id = isolate_id
        self.route = route
        self.loop = loop
        self.sender = sender
        self.errors = errors
        self.runtime = runtime
        self.debug_name = debug_name
        self.ports = ports
        self.receiver = receiver
        self.actions = actions
        self.endpoint = endpoint
        self.metrics: MetricsExport | None = None
        self._runs_on_own_loop = runs_on_own_loop
        self._spawning: set[concurrent.futures.Future[Any]] = set()

    def receiving(self) -> tuple[PortTable, Receiver, ControlActions]:
        """The pieces that receive, in a process that does (for its runtime).

        Raises:
            RuntimeError: This process only sends (an ``Isolate.run`` computation).
        """
        if self.ports is None or self.receiver is None or self.actions is None:
            raise RuntimeError(
                "ports can only receive in the main isolate or in an isolate started with "
                "Isolate.spawn; an Isolate.run computation can send but not receive"
            )
        return self.ports, self.receiver, self.actions

    # Ports -------------------------------------------------------------------------

    def open_port(self, mailbox: Mailbox[Any], keep_alive: bool) -> int:
        """Register a receive port by its mailbox; returns its id."""
        ports, _, _ = self.receiving()
        return ports.open(mailbox, keep_alive)

    def close_port(self, port_id: int) -> None:
        """Forget a closed port."""
        if self.ports is not None:
            self.ports.close(port_id)

    def set_keep_alive(self, port_id: int, keep: bool) -> None:
        """Whether the open port ``port_id`` keeps this isolate alive."""
        if self.ports is not None:
            self.ports.set_keep_alive(port_id, keep)

    def consumer_loop(self) -> asyncio.AbstractEventLoop:
        """The loop callbacks registered now run on: the isolate's own, or, in a process
        whose user code may run other loops (the driver, a worker), the running one."""
        if self._runs_on_own_loop:
            return self.loop
        return asyncio._get_running_loop() or self.loop

    def guarded(self, callback: Any, *args: Any) -> None:
        """Run a port callback; what it raises is an uncaught error of this isolate."""
        self.errors.guarded(callback, *args)

    # Sending -------------------------------------------------------------------------

    def send(self, port: SendPort[Any], message: Any) -> None:
        """Copy ``message`` now and queue it for ``port``."""
        self.sender.send(port, encode(message))

    def send_encoded(self, port: SendPort[Any], encoded: Encoded) -> None:
        """Queue an already encoded message for ``port``."""
        self.sender.send(port, encoded)

    def control(self, control_port: SendPort[Any], record: Control) -> None:
        """Send a control record to the isolate owning ``control_port``."""
        self.sender.control(control_port, record)

    def supervise(self, record: Control) -> None:
        """Send a control record to the supervisor (exit listeners, immediate kills)."""
        self.sender.supervise(record)

    # Spawning ------------------------------------------------------------------------

    def spawn_in_flight(self, call: concurrent.futures.Future[Any]) -> None:
        """A spawn this isolate asked for: its exit waits for it (:meth:`spawns_done`)."""
        with _lock:
            self._spawning.add(call)
        call.add_done_callback(self._spawn_done)

    def _spawn_done(self, call: concurrent.futures.Future[Any]) -> None:
        with _lock:
            self._spawning.discard(call)

    async def spawns_done(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for the spawns in flight to start or fail.

        A new isolate reads its message from objects this process owns, and
        Ray loses them when it ends; the spawn returns once the message is read.
        """
        with _lock:
            calls = [asyncio.wrap_future(call) for call in self._spawning]
        if calls and timeout > 0:
            await asyncio.wait(calls, timeout=timeout)

    # Being an isolate ------------------------------------------------------------------

    def capabilities(self) -> tuple[Capability, Capability]:
        """``(pause, terminate)`` capabilities of this isolate.

        Raises:
            RuntimeError: This process is not an isolate (an ``Isolate.run``
                computation).
        """
        if self.actions is None:
            raise RuntimeError(
                "an Isolate.run computation is a Ray task, not an isolate with a control "
                "port; Isolate.current() works in the main isolate and in spawned isolates"
            )
        return self.actions.pause_capability, self.actions.terminate_capability

    def exit(self, port: SendPort[Any] | None, message: Any) -> NoReturn:
        """``Isolate.exit`` here."""
        self.runtime.exit(port, message)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until everything sent over Ray so far is delivered (not from ``loop``)."""
        asyncio.run_coroutine_threadsafe(self.sender.drain(), self.loop).result(timeout)

    def close_channels(self) -> None:
        """Stop exporting figures and close the direct channels (the isolate is ending)."""
        if self.metrics is not None:
            self.metrics.stop()
        if self.endpoint is not None:
            self.endpoint.close()

    def close(self) -> None:
        """Release what this isolate started (at ``rayisolates.shutdown()``)."""
        self.runtime.close()


def find_supervisor() -> Any:
    """The supervisor of this Ray job (creates isolates, keeps exit listeners)."""
    name = supervisor_name(ray.get_runtime_context().get_job_id())
    try:
        return ray.get_actor(name, namespace=SUPERVISOR_NAMESPACE)
    except ValueError:
        raise RuntimeError(
            "no main isolate runs in this Ray job yet: spawn isolates from a driver "
            "that uses rayisolates (or from isolates it spawned)"
        ) from None


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
            # The one deliberate upward import: the factory of the default
            # context lives with the runtimes, which build on this module.
            from .._runtime.main import start_context

            install(start_context())
            on_shutdown(_forget)
        assert _current is not None
        return _current


def _forget() -> None:
    global _current
    context, _current = _current, None
    if context is not None:
        context.close()
