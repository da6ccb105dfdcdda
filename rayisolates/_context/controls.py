"""What control records do to one isolate."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._capability import Capability
from .._transport.wire import (
    AddErrorListener,
    Kill,
    Pause,
    Ping,
    RemoveErrorListener,
    Resume,
    SetErrorsFatal,
)
from .receiver import Receiver
from .uncaught import SendEncoded, UncaughtErrors

if TYPE_CHECKING:
    pass

__all__ = ["ControlActions"]


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
        errors: UncaughtErrors,
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
