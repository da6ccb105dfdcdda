"""Warm hosts set aside for the main isolate, which spawns into them without the supervisor.

Through the supervisor, a spawn from ``init(isolate_pool=N)`` costs two Ray
calls on its way (driver, supervisor, host) and, on the way back, the
return of the new host's actor handle, which Ray's borrowing protocol makes
slow. With a :class:`~.._transport.wire.Lease` the driver already holds a
warm host's handle and the capabilities the supervisor chose for it: it
calls ``host.start`` itself, and tells the supervisor ``Started`` in its
control sequence, before anything else it says about the isolate (an exit
listener, a kill). The supervisor holds the isolate's record from the lease
on, so listeners and kills from other isolates act on it meanwhile.

One lease::

    asked --supervisor.lease answered--> held --spawn--> starting
    starting --start answered--> started: Started sent, then the spawn's future completes
    starting --start raised--> KillNow sent; the spawn fails (the entry cannot load, say)
    starting --host gone--> the spawn is asked of the supervisor instead

The driver holds up to half the pool (at least one); leased hosts count
against the pool's size, and the supervisor starts a new one for each
leased host that starts an isolate.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from .._errors import start_failure
from .._isolate import Isolate
from .._sendport import SendPort
from .._transport.rpc import DEAD, call, call_in_background, fire, outcome
from .._transport.wire import (
    CONTROL_PORT,
    Control,
    KillNow,
    Lease,
    SpawnRequest,
    Started,
    new_id,
)

__all__ = ["Leases", "leases_for"]

_REMEMBERED_MODULES = 32  # entry points' modules that hosts leased later import first


def leases_for(pool_size: int) -> int:
    """How many warm hosts the driver holds for an isolate pool of ``pool_size``."""
    return 0 if pool_size <= 0 else max(1, pool_size // 2)


class Leases:
    """The warm hosts this driver holds, and spawns into them.

    Args:
        supervisor: The supervisor's handle (called when needed: it may change).
        supervise: Sends a control record to the supervisor, in this driver's sequence.
        size: How many leases to hold (0: none, spawns go to the supervisor).
    """

    def __init__(
        self,
        supervisor: Callable[[], Any],
        supervise: Callable[[Control], None],
        size: int,
    ) -> None:
        self._supervisor = supervisor
        self._supervise = supervise
        self._size = size
        self._lock = threading.Lock()
        self._held: collections.deque[Lease] = collections.deque()
        self._asking = False
        self._closed = False
        self.used = 0  # spawns started in a held host
        self._modules: collections.OrderedDict[str, None] = collections.OrderedDict()

    @property
    def held(self) -> int:
        """How many warm hosts this driver holds now."""
        return len(self._held)

    @property
    def size(self) -> int:
        """How many warm hosts this driver holds when none is in use."""
        return self._size

    def ask(self) -> None:
        """Ask the supervisor for hosts until ``size`` are held (one call at a time)."""
        with self._lock:
            if self._asking or self._closed or len(self._held) >= self._size:
                return
            self._asking = True
            count = self._size - len(self._held)
        lease_id = new_id("lease")
        asked = call(lambda: fire(self._supervisor().lease, lease_id, count))
        asked.add_done_callback(self._answered)

    def _answered(self, asked: concurrent.futures.Future[list[Lease]]) -> None:
        failed = asked.cancelled() or asked.exception() is not None
        with self._lock:
            self._asking = False
            if not failed:
                self._held.extend(asked.result())
            modules = list(self._modules)
        if failed:  # the supervisor gone (shutting down): ask no more
            return
        if modules:  # warmed before the supervisor heard of this driver's latest entry points
            for lease in asked.result():
                call_in_background(lease.host.warm, modules)
        self.ask()

    def _new_module(self, module: str | None) -> list[Lease]:
        """Under the lock: remember ``module``; the held hosts to warm with it if it is new."""
        if module is None:
            return []
        known = module in self._modules
        self._modules[module] = None
        self._modules.move_to_end(module)
        if len(self._modules) > _REMEMBERED_MODULES:
            self._modules.popitem(last=False)
        return [] if known else list(self._held)

    def close(self) -> None:
        """Ask for no more hosts (``rayisolates.shutdown()``)."""
        with self._lock:
            self._closed = True
            self._held.clear()

    def spawn(self, request: SpawnRequest) -> concurrent.futures.Future[Isolate] | None:
        """Start ``request`` in a held host; ``None`` when there is none to use (none held,
        or the request has Ray options: those need an actor made for them)."""
        if request.options:
            return None
        with self._lock:
            if not self._held:
                return None
            lease = self._held.popleft()
            self.used += 1
            warm = self._new_module(request.module)
        if warm:  # the hosts still held import it now, not at their spawn
            for held in warm:
                call_in_background(held.host.warm, [request.module])
        result: concurrent.futures.Future[Isolate] = concurrent.futures.Future()
        starting = call(lambda: fire(lease.host.start, request, lease.setup))

        def answered(done: concurrent.futures.Future[Any]) -> None:
            self._started(request, lease, done, result)
            # Only now: the supervisor then starts a Ray worker process to refill the pool,
            # which took CPU from this spawn on a small machine (2.4 ms of 11 here).
            self.ask()

        starting.add_done_callback(answered)
        return result

    def _started(
        self,
        request: SpawnRequest,
        lease: Lease,
        starting: concurrent.futures.Future[Any],
        result: concurrent.futures.Future[Isolate],
    ) -> None:
        error = None if starting.cancelled() else starting.exception()
        if error is None and not starting.cancelled():
            call_in_background(lease.host.release)
            self._supervise(
                Started(lease.isolate_id, request.debug_name, request.on_exit, request.module)
            )
            control: SendPort[Any] = SendPort(lease.isolate_id, CONTROL_PORT, lease.host)
            setup = lease.setup
            isolate = Isolate._handle(control, setup.pause, setup.terminate, request.debug_name)
            result.set_result(isolate)
            return
        if error is not None and outcome(error) == DEAD:  # gone while held: ask the supervisor
            asked = call(lambda: fire(self._supervisor().spawn, request))
            asked.add_done_callback(lambda done: _pass_on(done, result))
            return
        self._supervise(KillNow(lease.isolate_id, lease.setup.terminate))
        if error is None:
            result.cancel()
            return
        name = request.debug_name or lease.isolate_id
        result.set_exception(
            start_failure(error, name, cancelled=concurrent.futures.CancelledError)
        )


def _pass_on(
    done: concurrent.futures.Future[Isolate], result: concurrent.futures.Future[Isolate]
) -> None:
    if done.cancelled():
        result.cancel()
    elif (error := done.exception()) is not None:
        result.set_exception(error)
    else:
        result.set_result(done.result())
