"""Ray's own system messages kept out of the user's terminal.

A driver connected to Ray prints what the raylets report, prefixed
``(raylet)``: "N PYTHON worker processes have been started ... the maximum
expected startup concurrency" when many isolates start (they reserve no CPU,
so this is normal use here), and "A worker died or was killed ..." when an
isolate crashes (exit and error listeners are how a program learns of that).
Both are kept out by default. What isolates and runs print themselves still
reaches the terminal, as in Dart.

``RAYISOLATES_RAY_LOGS=1`` in the environment, or ``init(ray_logs=True)``,
shows Ray's messages again.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ENVIRONMENT_SWITCH", "dropped", "keep_ray_system_messages_out", "wants_ray_logs"]

ENVIRONMENT_SWITCH = "RAYISOLATES_RAY_LOGS"
_SYSTEM_SOURCES = frozenset({"raylet"})  # what Ray's log records name as their "pid"
_lock = threading.Lock()
dropped = 0  # messages kept out so far (for tests and diagnostics)


def wants_ray_logs(ray_logs: bool | None) -> bool:
    """Whether Ray's system messages should reach the terminal (argument, else environment)."""
    if ray_logs is not None:
        return ray_logs
    return os.environ.get(ENVIRONMENT_SWITCH, "").strip().lower() in {"1", "true", "yes", "on"}


def _filtered(printer: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(printer, "_rayisolates_filter", False):
        return printer

    @functools.wraps(printer)
    def print_unless_system(data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        global dropped
        if data.get("pid") in _SYSTEM_SOURCES:
            dropped += 1
            return None
        return printer(data, *args, **kwargs)

    print_unless_system._rayisolates_filter = True  # type: ignore[attr-defined]
    return print_unless_system


def keep_ray_system_messages_out() -> None:
    """Filter ``(raylet)`` lines from this driver's output; call after ``ray.init``.

    Ray prints them from two places: the thread that listens for error
    reports (through ``worker.print_to_stdstream``) and the handler that
    forwards worker logs. Both are wrapped; idempotent.
    """
    from ray._private import ray_logging, worker

    with _lock:
        worker.print_to_stdstream = _filtered(worker.print_to_stdstream)
        dispatcher = ray_logging.global_worker_stdstream_dispatcher
        with dispatcher._lock:
            dispatcher.handlers = [
                (name, _filtered(handler) if name == "ray_print_logs" else handler)
                for name, handler in dispatcher.handlers
            ]
