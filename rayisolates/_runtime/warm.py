"""The supervisor's warm hosts (``init(isolate_pool=N)``), counted without Ray.

A warm host is in one place at a time::

    starting --started--> waiting --taken by a spawn--> (an isolate: no longer counted)
    starting --failed--> (gone)           waiting --leased--> leased
    leased --the driver says Started, or the isolate ends first--> (no longer counted)

The places taken (waiting + starting + leased) stay at the pool's size:
every event that frees one says how many hosts to start now, so no order
of events (an isolate ending before the supervisor hears it started, say)
leaves the pool short. A host that fails to start is not replaced until the
next event (the pool is an optimization: spawns start hosts as needed); any
other event starts what is missing.
"""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

__all__ = ["WarmHosts"]

H = TypeVar("H")  # a host: its handle and isolate id, as the supervisor holds them
R = TypeVar("R")  # a leased host's record


class WarmHosts(Generic[H, R]):
    """Hosts waiting, starting and leased; how many to start after each event.

    Args:
        size: The pool's size.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.waiting: collections.deque[H] = collections.deque()
        self.starting = 0
        self.leased: dict[str, R] = {}

    def to_start(self) -> int:
        """Start this many hosts now (they count as starting from here)."""
        missing = max(0, self.size - len(self.waiting) - self.starting - len(self.leased))
        self.starting += missing
        return missing

    def started(self, host: H) -> int:
        """A host started: it waits for a spawn."""
        self.starting -= 1
        self.waiting.append(host)
        return self.to_start()

    def failed(self) -> None:
        """A host did not start (nothing is started again until the next event)."""
        self.starting -= 1

    def take(self) -> tuple[H | None, int]:
        """A waiting host for a spawn (``None``: none waits), and how many to start."""
        host = self.waiting.pop() if self.waiting else None
        return host, self.to_start()

    def lease(self, isolate_id: str, record: R) -> int:
        """Set ``record``'s host aside for the driver (taken from :attr:`waiting` by the
        caller with :meth:`take_for_lease`); how many to start."""
        self.leased[isolate_id] = record
        return self.to_start()

    def take_for_lease(self) -> H | None:
        """A waiting host to lease (it stays counted, as leased)."""
        return self.waiting.pop() if self.waiting else None

    def leased_started(self, isolate_id: str) -> tuple[R | None, int]:
        """The driver started a leased host: its record (``None``: it ended already),
        and how many to start."""
        record = self.leased.pop(isolate_id, None)
        return record, self.to_start()

    def ended(self, isolate_id: str) -> int:
        """A host ended (it frees a place if it was leased): how many to start."""
        self.leased.pop(isolate_id, None)
        return self.to_start()

    def get(self, isolate_id: str) -> R | None:
        """The record of a leased host."""
        return self.leased.get(isolate_id)

    @property
    def ready(self) -> int:
        """Hosts ready for a spawn: waiting here or held by the driver."""
        return len(self.waiting) + len(self.leased)
