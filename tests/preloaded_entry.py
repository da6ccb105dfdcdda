"""An entry point whose module notes whether it was imported before any isolate ran in
its process: a warm host imports the modules of recent entry points while it waits."""

from __future__ import annotations

from typing import Any

from rayisolates import SendPort
from rayisolates._context.context import peek

IMPORTED_BEFORE_ANY_ISOLATE = peek() is None


def report_preloaded(reply: SendPort[Any]) -> None:
    """Tell whether this module was imported while the host waited for a spawn."""
    reply.send(IMPORTED_BEFORE_ANY_ISOLATE)
