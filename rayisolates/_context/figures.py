"""What an isolate can say about itself: its counters, and the pools and workers in it.

Read by ``rayisolates status`` (through the supervisor) and by the metrics
exporter. Reading takes no lock that sending or receiving holds for long: the
counters are plain ints kept by the sender and the receiver, and the queued
figure sums lengths of deques.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .porttable import PortTable
    from .receiver import Receiver
    from .sender import Sender

__all__ = [
    "isolate_figures",
    "live_pools",
    "live_workers",
    "register_pool",
    "register_worker",
    "unregister_pool",
    "unregister_worker",
]


def isolate_figures(ports: PortTable, receiver: Receiver, sender: Sender) -> dict[str, int]:
    """``open_ports``; ``sent`` and ``received`` messages since the isolate started;
    ``queued``: received and not yet handled (held by a pause, or waiting in a port)."""
    held = receiver.held()
    return {
        "open_ports": len(ports),
        "sent": sender.sent_messages,
        "received": receiver.received_messages + held,
        "queued": held + ports.queued(),
    }


class _Pool(Protocol):
    @property
    def debug_name(self) -> str: ...

    def stats(self) -> dict[str, int]: ...


class _Live:
    """The objects of one kind this process has open, held weakly, under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: weakref.WeakSet[Any] = weakref.WeakSet()

    def add(self, thing: Any) -> None:
        with self._lock:
            self._objects.add(thing)

    def discard(self, thing: Any) -> None:
        with self._lock:
            self._objects.discard(thing)

    def now(self) -> list[Any]:
        with self._lock:
            return list(self._objects)


_pools = _Live()


def register_pool(pool: _Pool) -> None:
    """Count ``pool`` among this process's pools while it is alive and open."""
    _pools.add(pool)


def unregister_pool(pool: _Pool) -> None:
    """``pool`` has closed."""
    _pools.discard(pool)


def live_pools() -> list[dict[str, Any]]:
    """The name and stats of every open pool in this process."""
    return [{"name": pool.debug_name, **pool.stats()} for pool in _pools.now()]


class _Worker(Protocol):
    def stats(self) -> dict[str, Any]: ...


_workers = _Live()


def register_worker(worker: _Worker) -> None:
    """Count ``worker`` (the object an ``IsolateWorker`` serves) among this process's
    workers while it serves."""
    _workers.add(worker)


def unregister_worker(worker: _Worker) -> None:
    """``worker`` has stopped serving."""
    _workers.discard(worker)


def live_workers() -> list[dict[str, Any]]:
    """The stats of every worker this process serves: its class and calls."""
    return [worker.stats() for worker in _workers.now()]
