"""The receiving half of an isolate: each sender's batches put back in order, once.

Each sender numbers its batches to this isolate 0, 1, 2, ... Ray may run
calls out of order and a sender may send a batch again after a call that
failed without saying whether it ran, so a batch that arrives early is held
until the ones before it have been dispatched, and a sequence number seen
before is dropped: every message is dispatched exactly once, in the order
it was sent.

Not thread-safe: the owner calls it from one thread (or under its lock).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    """Reorders each sender's batches and hands their contents on, in order.

    Args:
        dispatch: Called with each batch's contents, in sending order.
    """

    def __init__(self, dispatch: Callable[[list[T]], Any]) -> None:
        self._dispatch = dispatch
        self._expected: dict[str, int] = {}
        self._early: dict[str, dict[int, list[T]]] = {}

    def received(self, sender: str) -> int:
        """The last of ``sender``'s batches dispatched in order (-1: none yet)."""
        return self._expected.get(sender, 0) - 1

    def is_duplicate(self, sender: str, seq: int) -> bool:
        """Whether batch ``seq`` of ``sender`` was dispatched or is held already."""
        return seq < self._expected.get(sender, 0) or seq in self._early.get(sender, ())

    def receive(self, sender: str, seq: int, batch: list[T]) -> None:
        """Take batch ``seq`` from ``sender``; dispatch it and any held successors."""
        expected = self._expected.get(sender, 0)
        if seq != expected:
            if seq > expected:
                self._early.setdefault(sender, {})[seq] = batch
            return
        early = self._early.get(sender)
        while True:
            self._expected[sender] = expected + 1  # before dispatching: a failure must not stall
            self._dispatch(batch)
            expected += 1
            if not early or expected not in early:
                break
            batch = early.pop(expected)
        if early is not None and not early:
            del self._early[sender]

    def forget(self, sender: str) -> None:
        """Drop what is known of ``sender`` (it has ended and sends no more)."""
        self._expected.pop(sender, None)
        self._early.pop(sender, None)

    def senders(self) -> int:
        """How many senders this inbox keeps state for."""
        return len(self._expected.keys() | self._early.keys())
