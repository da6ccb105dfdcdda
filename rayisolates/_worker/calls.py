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
import contextlib
import itertools
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._context.context import Context, current
from .._errors import RemoteError
from .._future import IsolateFuture
from .._ports import RawReceivePort
from .._sendport import SendPort
from .._transport.codec import encode_plain, is_plain, open_encoded
from .._transport.wire import Encoded
from .wire import CloseWorker, Hello, Mode, Reply, WorkerEnded

if TYPE_CHECKING:
    from .._isolate import Isolate

__all__ = ["Calls", "calls"]


@dataclass(slots=True)
class _Known:
    """What this process knows of one worker."""

    introduced: bool = False  # Hello sent, exit listener placed
    ended: str | None = None  # why later calls fail, once it has ended
    gone: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)


class _CallFuture(IsolateFuture[Any]):
    """A call's future, knowing its worker (light while it waits: see ``IsolateFuture``)."""

    def __init__(self, what: str, isolate_id: str) -> None:
        super().__init__(what)
        self.isolate_id = isolate_id


class Calls:
    """This process's calls to workers, and the port their answers come to."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[int, _CallFuture] = {}
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
            # Cancelling drops the answer (set on a cancelled future, it is ignored); the
            # call still runs.
            future = _CallFuture(what, isolate_id)
            known = self._known(isolate_id)
            ended = known.ended
            if ended is None:
                self._pending[call_id] = future
                self._introduce(known, isolate, calls)
        if ended is not None:
            future._fail(RemoteError(f"{what}: {ended}"))
            return future
        call = (call_id, self._caller, name, mode, args, stream)  # a Call, as a plain tuple
        if stream is None and is_plain(args):
            self.context.send_encoded(calls, encode_plain(call))
        else:
            calls.send(call)
        return future

    def close(self, isolate: Isolate, calls: SendPort[Any]) -> concurrent.futures.Future[None]:
        """Tell the worker to end after the calls made so far; the future of its end."""
        with self._lock:
            known = self._known(isolate.control_port.isolate_id)
            self._introduce(known, isolate, calls)
        calls.send(CloseWorker())
        return known.gone

    def _known(self, isolate_id: str) -> _Known:
        known = self._workers.get(isolate_id)
        if known is None:
            known = self._workers[isolate_id] = _Known()
        return known

    def _introduce(self, known: _Known, isolate: Isolate, calls: SendPort[Any]) -> None:
        """Under the lock, before this process's first call to a worker: the reply port to
        the worker, an exit listener on it (an isolate that has already ended sends the
        response at once). Under the lock, so that no other thread's first call overtakes
        the ``Hello`` (the worker could not answer it)."""
        if known.introduced:
            return
        known.introduced = True
        reply_port = self.port.send_port
        calls.send(Hello(self._caller, reply_port))
        isolate.add_on_exit_listener(reply_port, WorkerEnded(isolate.control_port.isolate_id))

    def _on_message(self, message: Any) -> None:
        if type(message) is tuple:
            self._answered(Reply._make(message))
        elif isinstance(message, WorkerEnded):
            self._ended(message.isolate_id)

    def _answered(self, reply: Reply) -> None:
        with self._lock:
            future = self._pending.pop(reply.call_id, None)
        if future is None:
            return
        try:
            value = open_encoded(reply.value)
            ok = reply.ok
        except Exception as error:  # a class this process lacks, say
            ok = False
            value = RemoteError(
                f"{future._what}: its outcome cannot be rebuilt here: "
                f"{type(error).__name__}: {error}"
            )
        if ok:
            future._succeed(value)
        else:
            future._fail(value)

    def _ended(self, isolate_id: str) -> None:
        """The worker's isolate has ended: fail what is pending, and every later call."""
        with self._lock:
            known = self._known(isolate_id)
            known.ended = "the worker has ended"
            failed = [
                (call_id, future)
                for call_id, future in self._pending.items()
                if future.isolate_id == isolate_id
            ]
            for call_id, _ in failed:
                del self._pending[call_id]
        for _, future in failed:
            future._fail(
                RemoteError(
                    f"{future._what}: the worker ended before answering (it crashed, "
                    "was killed or closed, or its node was lost)"
                )
            )
        with contextlib.suppress(concurrent.futures.InvalidStateError):
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
