"""Turning a message into what crosses between isolates, and back.

A message is copied when it is sent, as in Dart: encoding pickles it at
``send()``, so a later change by the sender cannot reach the receiver and an
unsendable message fails in the sender, naming the part that could not be
sent. What crosses is one of:

``INLINE``  an immutable scalar or short ``str``/``bytes``, carried as is;
``PICKLED`` pickle bytes plus the Ray object refs and actor handles found
            inside, carried beside the bytes so Ray counts their references;
``STORED``  a ``stored.Stored`` object ref: large messages are put into the
            object store once, and numpy buffers inside are then read
            without a copy.

Every stored value is opened by the receiving transport before it
acknowledges the batch, wherever the value rides: as a message of its own,
or as an encoded value inside another message (a stream's item, a pool
task's result). The sender owns the object and may end as soon as the batch
is acknowledged; Ray then fails every read of the ref, even where the
object was already fetched, while a value opened before keeps its memory.
"""

from __future__ import annotations

import asyncio
import copyreg
import io
import pickle
import sys
import threading
import types
from collections import ChainMap
from collections.abc import Callable
from typing import Any, ClassVar, NoReturn

import ray
from ray import cloudpickle
from ray.actor import ActorHandle

from .sendable import refusal, unsendable_part
from .stored import UNOPENED, Stored, recall
from .wire import Encoded, Item

__all__ = [
    "INLINE",
    "LARGE_BYTES",
    "PICKLED",
    "STORED",
    "Message",
    "Stored",
    "decode",
    "decode_now",
    "decode_pickled",
    "encode",
    "encode_plain",
    "is_plain",
    "needs_fetch",
    "open_encoded",
    "open_encoded_async",
]

INLINE, PICKLED, STORED = 0, 1, 2
LARGE_BYTES = 100 * 1024  # Ray's own limit for inlining call arguments
_INLINE_TYPES = frozenset({type(None), bool, int, float, complex})
_INLINE_SIZED = frozenset({str, bytes})

# What a port receives: (port_id, message)
Message = tuple[int, Any]

_local = threading.local()  # refs collected while pickling, or handed back while loading


def _restore(index: int) -> Any:
    return _local.restoring[index]


def _restore_stored(index: int) -> Stored:
    stored = Stored(_local.restoring[index])
    outcome = _local.opened.get(index, UNOPENED)
    if outcome is not UNOPENED:
        stored.opened(outcome)
    return stored


def _collect(obj: Any) -> tuple[Callable[[int], Any], tuple[int]]:
    refs: list[Any] = _local.collecting
    refs.append(obj)
    return _restore, (len(refs) - 1,)


def _refuse_file(file: Any) -> NoReturn:
    raise TypeError(
        f"cannot send an open file ({type(file).__name__}): send its name or its contents"
    )


def _collect_stored(stored: Stored) -> tuple[Callable[[int], Any], tuple[int]]:
    refs: list[Any] = _local.collecting
    refs.append(stored.ref)
    return _restore_stored, (len(refs) - 1,)


_BY_INDEX: dict[type, Callable[[Any], Any]] = {
    ray.ObjectRef: _collect,
    Stored: _collect_stored,
    ActorHandle: _collect,
    **{
        kind: _refuse_file
        for kind in (
            io.TextIOWrapper,
            io.BufferedReader,
            io.BufferedWriter,
            io.BufferedRandom,
            io.FileIO,
        )
    },
}


class _ByValue(Exception):
    """A function or class only this process can name: cloudpickle must carry its code."""


class _FastPickler(pickle.Pickler):
    dispatch_table = {**copyreg.dispatch_table, **_BY_INDEX}  # noqa: RUF012

    def reducer_override(self, obj: Any) -> Any:
        """Refuse functions and classes of ``__main__`` (or of no importable module).

        Plain pickle would name them, and ``__main__`` is another module in the
        receiving process (Ray's worker): they must travel by value.
        Containers and scalars never reach this method (pickle's fast paths).
        """
        if isinstance(obj, (types.FunctionType, type)):
            module = getattr(obj, "__module__", None)
            if module == "__main__" or module not in sys.modules:
                raise _ByValue
        return NotImplemented


class _CloudPickler(cloudpickle.CloudPickler):  # type: ignore[misc]
    dispatch_table: ClassVar[ChainMap[Any, Any]] = ChainMap(
        _BY_INDEX, cloudpickle.CloudPickler.dispatch_table
    )


def _pickle(message: Any, buffers: list[Any] | None) -> tuple[bytes, list[Any]]:
    """Pickle ``message``; buffers go out of band into ``buffers`` when it is a list."""
    callback = None if buffers is None else buffers.append
    refs: list[Any] = []
    _local.collecting = refs
    try:
        stream = io.BytesIO()
        try:
            _FastPickler(stream, protocol=5, buffer_callback=callback).dump(message)
        except Exception:
            # Lambdas, local classes and the like need cloudpickle: start over.
            refs.clear()
            if buffers is not None:
                buffers.clear()
            stream = io.BytesIO()
            _CloudPickler(stream, protocol=5, buffer_callback=callback).dump(message)
    finally:
        _local.collecting = None
    return stream.getvalue(), refs


def _problem(value: Any) -> str | None:
    try:
        _pickle(value, [])
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def _unsendable(message: Any, action: str, error: Exception) -> TypeError:
    return refusal(action, unsendable_part(message, "message", _problem) or f"message ({error})")


def encode(message: Any, action: str = "SendPort.send()", *, store: bool = True) -> Encoded:
    """Copy ``message`` into its travelling form: ``(kind, payload, refs)``.

    ``store=False`` keeps a large message out of the object store (pickled
    bytes instead), for one that others hold and send later, after this
    process may have ended: an exit listener's response, a ping's.

    Raises:
        TypeError: ``message`` (or something inside it) cannot be pickled; the
            message names the part.
    """
    kind = type(message)
    if kind in _INLINE_TYPES or (kind in _INLINE_SIZED and len(message) < LARGE_BYTES):
        return INLINE, message, None
    stored = recall(message) if store else None
    if stored is not None:  # already in the object store: pass it on, no copy
        return STORED, Stored(stored), None
    buffers: list[pickle.PickleBuffer] = []
    try:
        data, refs = _pickle(message, buffers)
    except Exception as error:
        raise _unsendable(message, action, error) from None
    if store and len(data) + sum(buffer.raw().nbytes for buffer in buffers) >= LARGE_BYTES:
        return STORED, Stored(ray.put(message)), None
    if buffers:  # small arrays: one in-band copy is cheaper than carrying buffers
        data, refs = _pickle(message, None)
    return PICKLED, data, refs or None


def encode_plain(message: tuple[Any, ...]) -> Encoded:
    """:func:`encode` for a small message of plain values only: ints, floats, ``str``,
    ``bytes``, ``None``, and tuples of them (an encoded value without refs inside, say).

    Pickled at C speed, without looking for refs, handles or stored values:
    the caller vouches there are none. For the hot paths of a protocol
    (an ``IsolateWorker`` call and its reply).
    """
    return PICKLED, pickle.dumps(message, protocol=5), None


def is_plain(encoded: Encoded | None) -> bool:
    """Whether an encoded value holds no refs, handles or stored values (a message carrying
    it can be pickled as plain values)."""
    return encoded is None or (encoded[2] is None and encoded[0] != STORED)


def decode_pickled(
    data: bytes, refs: list[Any] | None, opened: dict[int, Any] | None = None
) -> Any:
    """Rebuild a ``PICKLED`` payload, handing back the refs carried beside it.

    ``opened`` holds what the transport read from those refs (by position):
    the :class:`Stored` values among them come back opened.
    """
    _local.restoring = refs or ()
    _local.opened = opened or {}
    try:
        return pickle.loads(data)
    finally:
        _local.restoring = ()
        _local.opened = {}


def open_encoded(encoded: Encoded) -> Any:
    """Rebuild a value :func:`encode` made that travelled inside another message.

    A ``STORED`` value was opened by the transport that delivered the message
    carrying it (no copy for numpy buffers on the same node).
    """
    kind, payload, refs = encoded
    if kind == INLINE:
        return payload
    if kind == PICKLED:
        return decode_pickled(payload, refs)
    return payload.open()


async def open_encoded_async(encoded: Encoded) -> Any:
    """:func:`open_encoded` for an event loop: a stored value is awaited, not waited for."""
    kind, payload, _ = encoded
    if kind != STORED:
        return open_encoded(encoded)
    return await payload.open_async()


def needs_fetch(items: list[Item]) -> bool:
    """Whether a batch holds Ray objects a receiver fetches before acknowledging it."""
    return any(
        kind == STORED or (refs is not None and any(isinstance(r, ray.ObjectRef) for r in refs))
        for _, kind, _, refs in items
    )


def decode_now(items: list[Item]) -> list[Message]:
    """Rebuild a batch that needs nothing from the object store (see :func:`needs_fetch`)."""
    return [
        (port_id, payload if kind == INLINE else decode_pickled(payload, refs))
        for port_id, kind, payload, refs in items
    ]


async def decode(items: list[Item]) -> list[Message]:
    """Rebuild the messages of a batch, opening what is in the object store first.

    Stored messages come back as read-only views of the object store where
    they hold numpy buffers (no copy on the same node). Every ref carried
    inside a message is fetched, and a :class:`Stored` value among them
    opened; a ref that cannot be read still arrives, as the ref (a stored
    value fails where it is opened), so one bad ref loses no message.
    """
    if not needs_fetch(items):
        return decode_now(items)
    stored: list[Stored] = [payload for _, kind, payload, _ in items if kind == STORED]
    nested = [
        ref
        for _, kind, _, refs in items
        if kind == PICKLED and refs
        for ref in refs
        if isinstance(ref, ray.ObjectRef)
    ]
    outcomes = await asyncio.gather(
        *(value.ref for value in stored), *nested, return_exceptions=True
    )
    for value, outcome in zip(stored, outcomes, strict=False):
        value.opened(outcome)
    fetched = iter(outcomes[len(stored) :])
    messages: list[Message] = []
    for port_id, kind, payload, refs in items:
        if kind == INLINE:
            messages.append((port_id, payload))
        elif kind == PICKLED:
            opened = {
                index: next(fetched)
                for index, ref in enumerate(refs or ())
                if isinstance(ref, ray.ObjectRef)
            }
            messages.append((port_id, decode_pickled(payload, refs, opened)))
        else:
            messages.append((port_id, payload.open()))
    return messages
