"""A pool task's function: pickled once, sent to each member once, then named by its content.

A function defined in a script (``__main__``), a lambda or a closure travels
by value: pickling it costs more than the rest of a small task, and the
member would rebuild it for every task. So the caller keeps each function's
pickled form (:class:`Pickled`, by identity, checked against what the
function captures), and a member keeps the functions it was sent
(:class:`Loaded`), named by a digest of their pickled bytes: two closures
that capture different values differ, two copies of one lambda do not.

The pool knows which functions each member holds without asking
(:class:`Known`): a member's table and the pool's mirror of it change only
when a function is first sent, in the order the tasks are sent, and both
forget the oldest beyond :data:`CAPACITY`. Tasks reach a member in the order
sent (the transport's rule), so the mirror stays exact.

What a function captures from its module's globals is taken when it is first
pickled, as Ray does for a remote function: a global rebound later is not
seen by a member (a closure's cells are checked, and a new value there makes
a new pickle). Functions pickled larger than :data:`LARGEST` bytes, and those
that capture Ray object refs or actor handles, travel with every task.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import inspect
import threading
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._transport.codec import PICKLED, decode_pickled, encode
from .._transport.sendable import refusal, unsendable_part
from .._transport.wire import Encoded

__all__ = [
    "CAPACITY",
    "LARGEST",
    "Function",
    "Known",
    "Loaded",
    "Pickled",
    "call",
    "encode_call",
    "run_each",
]

CAPACITY = 256  # functions one member keeps (and the pool's mirror of them)
LARGEST = 64 * 1024  # bytes; a function pickled larger travels with every task


@dataclass(frozen=True, slots=True)
class Function:
    """A function in travelling form: its content digest and its pickled bytes."""

    key: bytes
    data: bytes


def _captured(fn: Any) -> tuple[Any, ...]:
    """What decides a function's pickle besides its identity: its code, defaults and the
    objects in its closure cells (a rebound cell makes a new pickle)."""
    if not isinstance(fn, types.FunctionType):
        return ()
    cells: list[int | None] = []
    for cell in fn.__closure__ or ():
        try:
            cells.append(id(cell.cell_contents))
        except ValueError:  # an empty cell
            cells.append(None)
    return (fn.__code__, id(fn.__defaults__), id(fn.__kwdefaults__), *cells)


class Pickled:
    """The caller's pickled functions, by identity; for Python functions only (builtins
    and other callables are cheap to pickle by name, or may carry state of their own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[int, tuple[weakref.ref[Any], tuple[Any, ...], Function]] = {}

    def function(self, fn: Callable[..., Any], action: str) -> Function | None:
        """``fn`` pickled, or ``None`` where it must travel with each task (too large,
        capturing Ray refs or handles).

        Raises:
            TypeError: ``fn`` cannot be sent (named, as by ``encode``).
        """
        cacheable = isinstance(fn, types.FunctionType)
        captured = _captured(fn)
        if cacheable:
            with self._lock:
                known = self._by_id.get(id(fn))
            if known is not None and known[0]() is fn and known[1] == captured:
                return known[2]
        kind, payload, refs = encode(fn, action, store=False)
        if kind != PICKLED or refs or len(payload) > LARGEST:
            return None
        function = Function(hashlib.blake2b(payload, digest_size=16).digest(), payload)
        if cacheable:
            key = id(fn)
            ref = weakref.ref(fn, lambda _, key=key: self._forget(key))  # type: ignore[misc]
            with self._lock:
                self._by_id[key] = (ref, captured, function)
        return function

    def _forget(self, key: int) -> None:
        with self._lock:
            known = self._by_id.get(key)
            if known is not None and known[0]() is None:
                del self._by_id[key]


class Known:
    """The pool's mirror of the functions one member holds."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._keys: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def sending(self, function: Function) -> bytes | None:
        """The bytes to send with a task calling ``function``: ``None`` if the member has
        them. Call it in the order the tasks are sent."""
        if function.key in self._keys:
            return None
        self._keys[function.key] = None
        if len(self._keys) > self._capacity:
            self._keys.popitem(last=False)
        return function.data


class Loaded:
    """A member's functions by key: their bytes as sent, rebuilt when first called."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._functions: collections.OrderedDict[bytes, Any] = collections.OrderedDict()

    def add(self, key: bytes, data: bytes) -> None:
        """A function sent with a task; call it in the order tasks arrive."""
        if key in self._functions:
            return
        self._functions[key] = data
        if len(self._functions) > self._capacity:
            self._functions.popitem(last=False)

    def get(self, key: bytes) -> Callable[..., Any]:
        """The function ``key`` names, rebuilt the first time.

        Raises:
            LookupError: It was never sent here (the pool's mirror is wrong).
            Exception: Rebuilding it failed (its module is missing here, say):
                the task fails, the function stays as sent.
        """
        try:
            held = self._functions[key]
        except KeyError:
            raise LookupError(
                f"a pool member was sent a task for function {key.hex()} it does not hold"
            ) from None
        if isinstance(held, bytes):
            held = self._functions[key] = decode_pickled(held, None)
        return held  # type: ignore[no-any-return]


_pickled = Pickled()


def encode_call(
    action: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
) -> tuple[Function | None, Encoded]:
    """A task in travelling form: ``fn`` pickled once (see :class:`Pickled`) and
    ``(args, kwargs)``; or, for a function that travels with every task, ``(fn, args)``.

    ``kwargs`` ``None`` makes a chunk: ``args`` is a list of argument tuples, run
    one after another (:func:`run_each`), the result their results' list.

    Raises:
        TypeError: The function or an argument cannot be sent (named); nothing was
            submitted.
    """
    try:
        function = _pickled.function(fn, action)
        if function is not None:
            return function, encode((args, kwargs), action)
        if kwargs is None:
            return None, encode((functools.partial(run_each, fn), args), action)
        return None, encode((functools.partial(fn, **kwargs) if kwargs else fn, args), action)
    except TypeError:
        raise refusal(action, _unsendable(fn, args, kwargs), "nothing was submitted") from None


def _unsendable(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> str:
    labelled = [("the function", fn)]
    if kwargs is None:
        labelled += [(f"item {i}", item) for i, item in enumerate(args)]
    else:
        labelled += [(f"argument {i}", arg) for i, arg in enumerate(args)]
        labelled += [(f"keyword argument {name!r}", arg) for name, arg in kwargs.items()]
    for label, value in labelled:
        part = unsendable_part(value, label)
        if part is not None:
            return part
    return "the task"


async def run_each(fn: Callable[..., Any], *calls: tuple[Any, ...]) -> list[Any]:
    """``fn`` called with each argument tuple in turn (awaited when it is a coroutine)."""
    results = []
    for args in calls:
        value = fn(*args)
        if inspect.isawaitable(value):
            value = await value
        results.append(value)
    return results


async def call(fn: Callable[..., Any], args: Any, kwargs: dict[str, Any] | None) -> Any:
    """Run one opened task: ``fn(*args, **kwargs)``, or a chunk (``kwargs`` ``None``)."""
    if kwargs is None:
        return await run_each(fn, *args)
    value = fn(*args, **kwargs)
    if inspect.isawaitable(value):
        value = await value
    return value
