"""This process's connection to Ray: started on first use or by ``init``, ended by ``shutdown``.

The public ``init`` and ``shutdown`` (``_api``) build on this; so does every
isolate's context, which starts Ray on first use and registers what to
release at shutdown.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import ray

from .quiet import keep_ray_system_messages_out, wants_ray_logs

__all__ = [
    "across_nodes",
    "connect",
    "direct_channels",
    "disconnect",
    "ensure_started",
    "on_shutdown",
    "settings",
]

_lock = threading.RLock()
_started_here = False
_shutdown_hooks: list[Callable[[], None]] = []
# What init() was asked for beyond Ray.
settings: dict[str, Any] = {"isolate_pool": 0, "direct": None}


def direct_channels() -> bool:
    """Whether isolates on one node talk over direct channels (``init(direct=)``, else the env)."""
    if settings["direct"] is not None:
        return bool(settings["direct"])
    switch = os.environ.get("RAYISOLATES_DIRECT", "1").strip().lower()
    return switch not in ("0", "false", "no", "off")


def across_nodes() -> bool:
    """Whether direct channels also join nodes (TCP); ``RAYISOLATES_DIRECT_ACROSS_NODES=0``
    keeps traffic between nodes on Ray, and so does Ray's TLS (``RAY_USE_TLS``): our
    channels are authenticated, not encrypted."""
    if not direct_channels():
        return False
    if os.environ.get("RAY_USE_TLS", "0").strip().lower() in ("1", "true", "yes", "on"):
        return False
    switch = os.environ.get("RAYISOLATES_DIRECT_ACROSS_NODES", "1").strip().lower()
    return switch not in ("0", "false", "no", "off")


def ensure_started() -> None:
    """Start (or join, with ``RAY_ADDRESS``) Ray unless this process already uses it."""
    if ray.is_initialized():
        return
    with _lock:
        if not ray.is_initialized():
            _start(None, {}, None)


def connect(
    address: str | None,
    ray_init_kwargs: dict[str, Any],
    ray_logs: bool | None,
    isolate_pool: int,
    direct: bool | None = None,
) -> None:
    """Start or join Ray now (``init``); refuses if this process is connected already."""
    with _lock:
        if ray.is_initialized():
            raise RuntimeError(
                "rayisolates.init(): Ray is already initialized in this process; "
                "call rayisolates.shutdown() first to connect elsewhere"
            )
        _start(address, ray_init_kwargs, ray_logs)
        settings["isolate_pool"] = isolate_pool
        settings["direct"] = direct


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


def disconnect() -> None:
    """Run the shutdown hooks, then end what this module started; idempotent."""
    global _started_here
    with _lock:
        hooks, _shutdown_hooks[:] = list(_shutdown_hooks), []
        for hook in reversed(hooks):
            hook()
        settings["isolate_pool"] = 0
        settings["direct"] = None
        if _started_here:
            _started_here = False
            ray.shutdown()
