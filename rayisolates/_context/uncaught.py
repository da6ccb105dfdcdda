"""An isolate's uncaught errors: sent to its error listeners, else printed; maybe fatal."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import IsolateExit
from .._transport.codec import encode
from .._transport.wire import Encoded

if TYPE_CHECKING:
    from .._sendport import SendPort

__all__ = ["SendEncoded", "UncaughtErrors"]

log = logging.getLogger("rayisolates.uncaught")

# How a piece of an isolate sends an encoded message to a port (the sender's ``send``).
SendEncoded = Callable[["SendPort[Any]", Encoded], None]


class UncaughtErrors:
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
            log.error("Uncaught error in isolate %s:\n%s", self._name(), stack.rstrip("\n"))
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
