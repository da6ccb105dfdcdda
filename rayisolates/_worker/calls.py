"""The caller's side: this process's calls to workers, answered on one reply port.

One :class:`Calls` per process (per isolate context), made on the first
call: a ``RawReceivePort`` for every worker's answers, and the calls still
pending. The first call to a worker from this process says ``Hello`` with
the reply port and places an exit listener on the worker's isolate, whose
response (``WorkerEnded``) fails what is still pending there and every later
call. Futures are completed after the lock is released (their callbacks may
do anything, a new call included).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._context.context import Context, current
from .._errors import RemoteError
from .._future import IsolateFuture
from .._ports import RawReceivePort
from .._sendport import SendPort
from .._transport.codec import open_encoded
from .._transport.wire import Encoded
from .wire import Call, CloseWorker, Hello, Mode, Reply, WorkerEnded

if TYPE_CHECKING:
    from .._isolate import Isolate

__all__ = ["Calls", "calls"]


@dataclass(slots=True)
class _Known:
    """What this process knows of one worker."""

    introduced: bool = False  # Hello sent, exit listener placed
    ended: str | None = None  # why later calls fail, once it has ended
    pending: set[int] = field(default_factory=set)
    gone: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)


@dataclass(slots=True)
class _Pending:
    future: IsolateFuture[Any]
    isolate_id: str
    what: str


class Calls:
    """This process's calls to workers, and the port their answers come to."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[int, _Pending] = {}
        self._workers: dict[str, _Known] = {}
        self.port: RawReceivePort[Any] = RawReceivePort(self._on_message, "worker-replies")
        self._caller = f"{context.isolate_id}:{self.port.send_port.port_id}"

    def call(
        self,
        isolate: Isolate,
        calls: SendPort[Any],
        what: str,
        name: str,
        mode: Mode,
        args: Encoded | None,
        stream: tuple[SendPort[Any], int] | None = None,
    ) -> IsolateFuture[Any]:
        """Send one call to the worker at ``calls``; the future of its outcome."""
        isolate_id = isolate.control_port.isolate_id
        with self._lock:
            call_id = next(self._ids)
            future: IsolateFuture[Any] = IsolateFuture(what, lambda: self._forget(call_id))
            known = self._known(isolate_id)
            ended = known.ended
            if ended is None:
                self._pending[call_id] = _Pending(future, isolate_id, what)
                known.pending.add(call_id)
                introduce = not known.introduced
                known.introduced = True
        if ended is not None:
            future._fail(RemoteError(f"{what}: {ended}"))
            return future
        if introduce:
            self._introduce(isolate, calls)
        calls.send(Call(call_id, self._caller, name, mode, args, stream))
        return future

    def close(self, isolate: Isolate, calls: SendPort[Any]) -> concurrent.futures.Future[None]:
        """Tell the worker to end after the calls made so far; the future of its end."""
        with self._lock:
            known = self._known(isolate.control_port.isolate_id)
            introduce = not known.introduced
            known.introduced = True
        if introduce:
            self._introduce(isolate, calls)
        calls.send(CloseWorker())
        return known.gone

    def pending(self, isolate_id: str) -> int:
        """Calls this process made to the worker and has no answer to yet."""
        with self._lock:
            known = self._workers.get(isolate_id)
            return 0 if known is None else len(known.pending)

    def _known(self, isolate_id: str) -> _Known:
        known = self._workers.get(isolate_id)
        if known is None:
            known = self._workers[isolate_id] = _Known()
        return known

    def _introduce(self, isolate: Isolate, calls: SendPort[Any]) -> None:
        """Before the first call: the reply port to the worker, an exit listener on it (an
        isolate that has already ended sends the response at once)."""
        reply_port = self.port.send_port
        calls.send(Hello(self._caller, reply_port))
        isolate.add_on_exit_listener(reply_port, WorkerEnded(isolate.control_port.isolate_id))

    def _forget(self, call_id: int) -> None:
        """A cancelled call: its answer, if one comes, is dropped (the call still runs)."""
        with self._lock:
            pending = self._pending.pop(call_id, None)
            if pending is not None:
                self._workers[pending.isolate_id].pending.discard(call_id)

    def _on_message(self, message: Any) -> None:
        if isinstance(message, Reply):
            self._answered(message)
        elif isinstance(message, WorkerEnded):
            self._ended(message.isolate_id)

    def _answered(self, reply: Reply) -> None:
        with self._lock:
            pending = self._pending.pop(reply.call_id, None)
            if pending is None:
                return
            self._workers[pending.isolate_id].pending.discard(reply.call_id)
        try:
            value = open_encoded(reply.value)
            ok = reply.ok
        except Exception as error:  # a class this process lacks, say
            ok = False
            value = RemoteError(
                f"{pending.what}: its outcome cannot be rebuilt here: "
                f"{type(error).__name__}: {error}"
            )
        if ok:
            pending.future._succeed(value)
        else:
            pending.future._fail(value)

    def _ended(self, isolate_id: str) -> None:
        """The worker's isolate has ended: fail what is pending, and every later call."""
        with self._lock:
            known = self._known(isolate_id)
            known.ended = "the worker has ended"
            failed = [self._pending.pop(call_id) for call_id in sorted(known.pending)]
            known.pending.clear()
        for pending in failed:
            pending.future._fail(
                RemoteError(
                    f"{pending.what}: the worker ended before answering (it crashed, "
                    "was killed or closed, or its node was lost)"
                )
            )
        if not known.gone.done():
            known.gone.set_result(None)


_calls: Calls | None = None
_calls_lock = threading.Lock()


def calls() -> Calls:
    """This process's :class:`Calls`, made on first use (again after a new ``init``)."""
    global _calls
    context = current()
    made = _calls
    if made is not None and made.context is context:
        return made
    with _calls_lock:
        if _calls is None or _calls.context is not context:
            _calls = Calls(context)
        return _calls
