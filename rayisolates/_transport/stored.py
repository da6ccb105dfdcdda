"""Values that came out of Ray's object store, remembered with their object refs.

Sending such a value again (forwarding a large array received from another
isolate, or one returned by ``Isolate.run``) passes the same object ref
instead of putting a copy: the data stays where it is, is read without a
copy by every isolate on a node that has it, and crosses to another node
once. Only values Ray handed out read-only qualify, so reusing the ref can
never show a receiver something the sender changed; and only refs owned by
the main isolate (which outlives every isolate) or by this process (which
delivers before it ends), since Ray loses an object with its owner.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import ray

__all__ = ["recall", "remember"]

_lock = threading.Lock()
_refs: dict[int, tuple[weakref.ref[Any], ray.ObjectRef]] = {}


def _is_read_only_view(value: Any) -> bool:
    flags = getattr(value, "flags", None)
    return flags is not None and not flags.writeable and not flags.owndata


def _owner_lasts(ref: ray.ObjectRef) -> bool:
    from ray.core.generated.common_pb2 import Address

    owner = Address.FromString(ref.owner_address()).worker_id
    context = ray.get_runtime_context()
    driver = bytes.fromhex(context.get_job_id()).ljust(len(owner), b"\xff")  # Ray's driver id
    return owner in (driver, bytes.fromhex(context.get_worker_id()))


def remember(value: Any, ref: ray.ObjectRef) -> None:
    """Note that ``value`` is the object store's read-only copy of ``ref``."""
    if not _is_read_only_view(value) or not _owner_lasts(ref):
        return
    key = id(value)

    def forget(_: weakref.ref[Any]) -> None:
        with _lock:
            entry = _refs.get(key)
            if entry is not None and entry[0]() is None:
                del _refs[key]

    try:
        entry = (weakref.ref(value, forget), ref)
    except TypeError:
        return
    with _lock:
        _refs[key] = entry


def recall(value: Any) -> ray.ObjectRef | None:
    """The object ref ``value`` was read from, if it is one we remembered."""
    with _lock:
        entry = _refs.get(id(value))
    if entry is None or entry[0]() is not value:
        return None
    return entry[1]
