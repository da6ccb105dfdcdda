"""``rayisolates.init`` and ``rayisolates.shutdown``: the runtime, started and ended by hand."""

from __future__ import annotations

from typing import Any

import ray

from ._context.connection import connect, disconnect
from ._context.context import current

__all__ = ["init", "shutdown"]


def init(
    address: str | None = None,
    *,
    isolate_pool: int = 0,
    ray_logs: bool | None = None,
    direct: bool | None = None,
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
        direct: Whether isolates on the same node (the main isolate
            included) send each other messages over direct local channels
            (Unix sockets private to this user) rather than Ray calls. On by
            default, unless ``RAYISOLATES_DIRECT=0`` is set; off, every
            message goes over Ray. Messages between nodes, and messages
            holding Ray objects (large ones, ``SendPort``), always go over Ray.
        **ray_init_kwargs: Passed to ``ray.init`` (``num_cpus``,
            ``object_store_memory``, ``runtime_env``, ...). Ray's own log
            output is kept at ``logging.ERROR`` unless ``logging_level`` is
            given.

    Raises:
        RuntimeError: Ray is already initialized in this process; call
            :func:`shutdown` first.
        ValueError: ``isolate_pool`` is negative.
    """
    if isolate_pool < 0:
        raise ValueError(f"rayisolates.init(): isolate_pool must be 0 or more, got {isolate_pool}")
    connect(address, ray_init_kwargs, ray_logs, isolate_pool, direct)
    if isolate_pool:
        ray.get(current().sender.supervisor().fill_pool.remote())


def shutdown() -> None:
    """End what :func:`init` (or first use) started; idempotent.

    Delivers what the main isolate still has queued, ends every isolate,
    then disconnects from Ray; a local runtime started by rayisolates stops.
    A Ray connection the user made with ``ray.init`` themselves is left open.
    """
    disconnect()
