"""What control records do to one isolate, and what becomes of its uncaught errors."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._capability import Capability
from .._errors import IsolateExit
from .._transport.codec import encode
from .._transport.wire import (
    AddErrorListener,
    Encoded,
    Kill,
    Pause,
    Ping,
    RemoveErrorListener,
    Resume,
    SetErrorsFatal,
)
from .receiver import Receiver

if TYPE_CHECKING:
    from .._sendport import SendPort

__all__ = ["ControlActions", "Errors"]

SendEncoded = Callable[["SendPort[Any]", Encoded], None]


class Errors:
    """An isolate's uncaught errors: sent to its error listeners, else printed.

    Args:
        name: The isolate's name for printed reports.
        send: Sends an encoded message to a port.
        fatal: Whether an uncaught error ends the isolate.
        end: Ends the isolate after a fatal error, given the report.
    """

    def __init__(
        self,
        name: Callable[[], str],
        send: SendEncoded,
        fatal: bool = False,
        end: Callable[[list[str]], None] = lambda report: None,
    ) -> None:
        self._name = name
        self._send = send
        self.fatal = fatal
        self._end = end
        self.listeners: set[SendPort[Any]] = set()

    def uncaught(self, error: BaseException) -> None:
        """An error no code of the isolate caught."""
        stack = "".join(traceback.format_exception(error))
        report = [str(error), stack]
        listeners = list(self.listeners)
        for port in listeners:
            self._send(port, encode(report))
        if not listeners:
            print(f"Uncaught error in isolate {self._name()}:\n{stack}", file=sys.stderr, end="")
        if self.fatal:
            self._end(report)

    def guarded(self, callback: Callable[..., object], *args: Any) -> None:
        """Run a port callback; what it raises is an uncaught error of the isolate."""
        try:
            callback(*args)
        except IsolateExit:
            pass  # Isolate.exit() in a callback: the isolate is ending already
        except Exception as error:
            self.uncaught(error)


class ControlActions:
    """The control records that act on an isolate's loop, each with its action.

    Args:
        pause_capability: Authorizes pause and resume.
        terminate_capability: Authorizes kill and ``set_errors_fatal``.
        receiver: Holds port messages while paused.
        errors: Keeps the error listeners and whether errors are fatal.
        send: Sends an encoded message (ping responses).
        kill: Ends the isolate (``BEFORE_NEXT_EVENT``).
        resumed: Called when the last pause is lifted.
    """

    def __init__(
        self,
        pause_capability: Capability,
        terminate_capability: Capability,
        receiver: Receiver,
        errors: Errors,
        send: SendEncoded,
        kill: Callable[[], None],
        resumed: Callable[[], None] = lambda: None,
    ) -> None:
        self.pause_capability = pause_capability
        self.terminate_capability = terminate_capability
        self._receiver = receiver
        self._errors = errors
        self._send = send
        self._kill = kill
        self._resumed = resumed
        self._actions: dict[type, Callable[[Any], None]] = {
            Kill: self._on_kill,
            Pause: self._on_pause,
            Resume: self._on_resume,
            Ping: self._on_ping,
            AddErrorListener: self._on_add_error_listener,
            RemoveErrorListener: self._on_remove_error_listener,
            SetErrorsFatal: self._on_set_errors_fatal,
        }

    def apply(self, record: Any) -> None:
        """Act on one control record (records meant for others are ignored)."""
        action = self._actions.get(type(record))
        if action is not None:
            action(record)

    def _on_kill(self, record: Kill) -> None:
        if record.capability == self.terminate_capability:
            self._kill()

    def _on_pause(self, record: Pause) -> None:
        if record.capability == self.pause_capability:
            self._receiver.pause(record.resume)

    def _on_resume(self, record: Resume) -> None:
        if record.capability == self.pause_capability and self._receiver.resume(record.resume):
            self._resumed()

    def _on_ping(self, record: Ping) -> None:
        self._send(record.port, record.response)

    def _on_add_error_listener(self, record: AddErrorListener) -> None:
        self._errors.listeners.add(record.port)

    def _on_remove_error_listener(self, record: RemoveErrorListener) -> None:
        self._errors.listeners.discard(record.port)

    def _on_set_errors_fatal(self, record: SetErrorsFatal) -> None:
        if record.capability == self.terminate_capability:
            self._errors.fatal = record.fatal
