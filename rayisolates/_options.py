"""The Ray options ``Isolate.run`` and ``Isolate.spawn`` pass through, and their check."""

from __future__ import annotations

from typing import Any

__all__ = ["ACTOR_OPTIONS", "TASK_OPTIONS", "check_options"]

# Where work runs and what it reserves: the same for tasks and actors.
_PLACEMENT = frozenset(
    {
        "accelerator_type",
        "fallback_strategy",
        "label_selector",
        "memory",
        "num_cpus",
        "num_gpus",
        "placement_group",
        "placement_group_bundle_index",
        "placement_group_capture_child_tasks",
        "resources",
        "runtime_env",
        "scheduling_strategy",
    }
)
TASK_OPTIONS = _PLACEMENT | {"max_retries", "retry_exceptions"}
ACTOR_OPTIONS = _PLACEMENT | {"object_store_memory"}


def check_options(options: dict[str, Any], allowed: frozenset[str], action: str, hint: str) -> None:
    """Raise ``TypeError`` naming every key of ``options`` not in ``allowed``.

    Args:
        options: The keyword arguments given.
        allowed: The Ray options that apply.
        action: Names the call in the message (``"Isolate.run()"``).
        hint: What the options are, and what to do instead, for the message.
    """
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(
            f"{action} got unknown option(s) {', '.join(unknown)}: keyword arguments are "
            f"{hint} ({', '.join(sorted(allowed))})"
        )
