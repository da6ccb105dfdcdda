"""Values in Ray's object store: a stored message, and values remembered with their refs.

:class:`Stored` is how a large message travels: its object ref, and, once
the receiving transport has opened it, its value (see ``codec``).

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

__all__ = ["UNOPENED", "Stored", "recall", "remember"]

UNOPENED: Any = object()  # a stored value's outcome before it is opened
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


class Stored:
    """A value in Ray's object store: its ref, and the value once opened here.

    The receiving transport opens it on arrival (see the module's note);
    :meth:`open` reads it from the ref only where it came some other way.
    """

    __slots__ = ("_outcome", "ref")

    def __init__(self, ref: ray.ObjectRef, outcome: Any = UNOPENED) -> None:
        self.ref = ref
        self._outcome = outcome  # the value, or the exception opening it raised

    def __reduce__(self) -> tuple[Any, tuple[ray.ObjectRef]]:
        return Stored, (self.ref,)  # the value stays here; the ref travels

    def opened(self, outcome: Any) -> None:
        """Keep what opening the ref gave: its value, or the exception raised."""
        self._outcome = outcome

    def open(self) -> Any:
        """The value (read from the object store unless it was opened on arrival)."""
        if self._outcome is UNOPENED:
            try:
                self._outcome = ray.get(self.ref)
            except Exception as error:
                self._outcome = error
        return self._result()

    async def open_async(self) -> Any:
        """:meth:`open` for an event loop: a value not opened yet is awaited."""
        if self._outcome is UNOPENED:
            try:
                self._outcome = await self.ref
            except Exception as error:
                self._outcome = error
        return self._result()

    def _result(self) -> Any:
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        remember(self._outcome, self.ref)
        return self._outcome

    def __repr__(self) -> str:
        state = "unopened" if self._outcome is UNOPENED else "opened"
        return f"<Stored {self.ref.hex()} {state}>"
