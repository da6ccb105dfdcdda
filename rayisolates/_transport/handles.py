"""Frames for direct channels: pickles in which Ray actor handles travel as their ids.

A ``SendPort`` (and so an ``Isolate`` handle, or a control record that names a
port) carries the actor handle that delivers to its isolate. Over Ray, the
handle travels beside the message and Ray counts it. On a direct channel it
travels as its actor id plus Ray's own out-of-band form of it, and the
receiving process rebuilds it once: later frames naming the same actor get
the handle it rebuilt then (rebuilding costs Ray some 25 us; finding it, a
dictionary lookup). No Ray call is made either way.

Handles sent this way are not counted by Ray while they travel; that is
safe here because no isolate's actor lives by its handles: the supervisor
holds every host until it ends, and the main isolate's route is the
supervisor itself.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from typing import Any

from ray.actor import ActorHandle

__all__ = ["dumps", "loads"]

_KEEP = 4096  # handles (and their travelling forms) remembered per process

_forms: dict[ActorHandle, tuple[Any, ...]] = {}  # handle -> how it travels
_rebuilt: dict[bytes, ActorHandle] = {}  # actor id -> handle rebuilt here


def _travelling(handle: ActorHandle) -> tuple[Any, ...]:
    form = _forms.get(handle)
    if form is None:
        rebuild, arguments = handle.__reduce__()
        form = (handle._actor_id.binary(), rebuild, arguments)
        if len(_forms) >= _KEEP:
            _forms.clear()
        _forms[handle] = form
    return _handle, form


def _handle(actor_id: bytes, rebuild: Any, arguments: tuple[Any, ...]) -> ActorHandle:
    """The handle of ``actor_id`` in this process: rebuilt the first time only."""
    handle = _rebuilt.get(actor_id)
    if handle is None:
        handle = rebuild(*arguments)
        if len(_rebuilt) >= _KEEP:
            _rebuilt.clear()
        _rebuilt[actor_id] = handle
    return handle


class _Pickler(pickle.Pickler):
    dispatch_table = {**copyreg.dispatch_table, ActorHandle: _travelling}  # noqa: RUF012


def dumps(value: Any) -> bytes:
    """Pickle ``value`` for a direct channel (actor handles by id)."""
    stream = io.BytesIO()
    _Pickler(stream, protocol=5).dump(value)
    return stream.getvalue()


def loads(data: bytes | memoryview) -> Any:
    """Rebuild what :func:`dumps` made."""
    return pickle.loads(data)
