"""What crosses between a worker and its callers: the records of the call protocol.

A caller process talks to a worker over the worker's call port, and the
worker answers on the caller's reply port (one per calling process)::

    caller process                                    worker isolate
      | Hello(caller, reply port)  (first call only) --> |  remembers the reply port
      | Call(call_id, caller, name, mode, args, stream)-> |  queued, started in order
      | <-------------------------- Reply(call_id, ok, value)
      | CloseWorker() ----------------------------------> |  calls made so far finish,
      |                                                   |  later ones are refused,
      | <---------------- WorkerEnded(isolate_id) ------- |  then the isolate ends (the
      |                                 (exit listener)   |  supervisor's exit notice)

``Call`` and ``Reply``, the hot records, travel as plain tuples (a
record's class would cost its name in every pickle), pickled at C speed
when they hold only plain values (``codec.is_plain``); ``Call._make`` and
``Reply._make`` rebuild them on arrival.

Messages from one process to one port arrive in the order sent, so a
caller's ``Hello`` comes before its calls, and its calls start in the order
made. A worker that ends for any reason fires the exit listener each
calling process placed with its first call; that fails what is pending.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from .._transport.wire import Encoded

__all__ = [
    "Call",
    "CloseWorker",
    "Failed",
    "Hello",
    "Mode",
    "Ready",
    "Reply",
    "WorkerEnded",
]

Mode = Literal["call", "get", "stream"]


class Ready(NamedTuple):
    """The worker's object is built: where to call it, and what it has."""

    calls: Any  # SendPort of the worker's call port
    kinds: dict[str, str]  # attribute name -> "sync", "async", "gen", "agen" or "value"
    class_name: str


class Failed(NamedTuple):
    """The factory raised (or gave something that cannot serve); the encoded error."""

    error: Encoded


class Hello(NamedTuple):
    """A calling process introduces its reply port before its first call."""

    caller: str
    reply_port: Any  # SendPort


class Call(NamedTuple):
    """One call: ``name(*args, **kwargs)``; ``mode`` ``get`` reads an attribute, ``stream``
    runs a generator method whose items go to ``stream`` (the stream's port, its buffer)."""

    call_id: int
    caller: str
    name: str
    mode: Mode
    args: Encoded | None  # (args, kwargs), or None for neither
    stream: tuple[Any, int] | None = None


class CloseWorker(NamedTuple):
    """Finish the calls made so far, refuse later ones, then end."""


class Reply(NamedTuple):
    """The outcome of call ``call_id``: its encoded value, or the encoded error."""

    call_id: int
    ok: bool
    value: Encoded


class WorkerEnded(NamedTuple):
    """The exit listener's response: the worker's isolate has ended."""

    isolate_id: str
