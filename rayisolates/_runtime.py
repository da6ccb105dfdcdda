"""Connecting the process to Ray: ``init``, ``shutdown``, and start on first use."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import ray

from ._quiet import keep_ray_system_messages_out, wants_ray_logs

__all__ = ["ensure_started", "init", "on_shutdown", "settings", "shutdown"]

_lock = threading.RLock()
_started_here = False
_shutdown_hooks: list[Callable[[], None]] = []
settings: dict[str, Any] = {"isolate_pool": 0}  # what init() was asked for beyond Ray


def init(
    address: str | None = None,
    *,
    isolate_pool: int = 0,
    ray_logs: bool | None = None,
    **ray_init_kwargs: Any,
) -> None:
    """Connect this process to Ray: start a local runtime or join a cluster.

    Without ``address`` (and without ``RAY_ADDRESS`` in the environment) a
    local Ray starts, as the embedded default; ``address`` (or
    ``RAY_ADDRESS``) joins a running cluster. Calling ``init`` is optional:
    the first isolate started does it with no arguments.

    Args:
        address: A Ray cluster address (``"host:6379"``, ``"auto"``,
            ``"ray://..."``), or ``None``.
        isolate_pool: How many isolate hosts (Ray actors) to keep started
            and idle, so that ``Isolate.spawn`` without Ray options takes one
            at once instead of waiting for a new actor; each uses a worker
            process's memory while idle. ``init`` returns once they run.
        ray_logs: Whether Ray's own system messages (``(raylet) ...``: many
            worker processes started, a worker died) reach the terminal.
            By default they do not, unless ``RAYISOLATES_RAY_LOGS=1`` is set;
            what isolates print always does.
        **ray_init_kwargs: Passed to ``ray.init`` (``num_cpus``,
            ``object_store_memory``, ``runtime_env``, ...). Ray's own log
            output is kept at ``logging.ERROR`` unless ``logging_level`` is
            given.

    Raises:
        RuntimeError: Ray is already initialized in this process; call
            :func:`shutdown` first.
    """
    if isolate_pool < 0:
        raise ValueError(f"rayisolates.init(): isolate_pool must be 0 or more, got {isolate_pool}")
    with _lock:
        if ray.is_initialized():
            raise RuntimeError(
                "rayisolates.init(): Ray is already initialized in this process; "
                "call rayisolates.shutdown() first to connect elsewhere"
            )
        _start(address, ray_init_kwargs, ray_logs)
        settings["isolate_pool"] = isolate_pool
    if isolate_pool:
        from ._context import current

        ray.get(current().sender.supervisor().fill_pool.remote())


def ensure_started() -> None:
    """Start (or join, with ``RAY_ADDRESS``) Ray unless this process already uses it."""
    if ray.is_initialized():
        return
    with _lock:
        if not ray.is_initialized():
            _start(None, {}, None)


def _start(address: str | None, ray_init_kwargs: dict[str, Any], ray_logs: bool | None) -> None:
    global _started_here
    ray_init_kwargs.setdefault("logging_level", logging.ERROR)
    ray.init(address=address, **ray_init_kwargs)
    _started_here = True
    if not wants_ray_logs(ray_logs):
        keep_ray_system_messages_out()


def on_shutdown(hook: Callable[[], None]) -> None:
    """Run ``hook`` at :func:`shutdown`, before Ray disconnects (once per registration)."""
    with _lock:
        _shutdown_hooks.append(hook)


def shutdown() -> None:
    """End what :func:`init` (or first use) started; idempotent.

    Releases this process's isolate machinery, then disconnects from Ray; a
    local runtime started by rayisolates stops. A Ray connection the user
    made with ``ray.init`` themselves is left open.
    """
    global _started_here
    with _lock:
        hooks, _shutdown_hooks[:] = list(_shutdown_hooks), []
        for hook in reversed(hooks):
            hook()
        settings["isolate_pool"] = 0
        if _started_here:
            _started_here = False
            ray.shutdown()
