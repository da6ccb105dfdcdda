"""The receiving half of an isolate: batches decoded, put back in order, dispatched.

Each sender numbers its batches to this isolate 0, 1, 2, ...; Ray may deliver
them in any order, so a batch that arrives early is held until the ones
before it have been dispatched. A sequence number seen before is dropped:
every message is dispatched exactly once, in the order it was sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import ray

from ._codec import INLINE, PICKLED, STORED, Item, decode_pickled
from ._stored import remember

__all__ = ["Inbox", "Message", "decode", "decode_now"]

# What a port receives: (port_id, message); control inboxes carry (action, args)
Message = tuple[Any, Any]


def decode_now(items: list[Item]) -> list[Message]:
    """Rebuild a batch that needs nothing from the object store (see ``_codec.needs_fetch``)."""
    return [
        (port_id, payload if kind == INLINE else decode_pickled(payload, refs))
        for port_id, kind, payload, refs in items
    ]


async def decode(items: list[Item]) -> list[Message]:
    """Rebuild the messages of a batch, fetching what is in the object store first.

    Stored messages come back as read-only views of the object store where
    they hold numpy buffers (no copy on the same node).
    """
    stored = [payload for _, kind, payload, _ in items if kind == STORED]
    nested = [
        ref
        for _, kind, _, refs in items
        if kind == PICKLED and refs
        for ref in refs
        if isinstance(ref, ray.ObjectRef)
    ]
    values = await asyncio.gather(*stored) if stored else []
    for ref, value in zip(stored, values, strict=True):
        remember(value, ref)
    fetched = iter(values)
    if nested:
        await asyncio.gather(*nested)  # local before the (synchronous) unpickling below
    messages: list[Message] = []
    for port_id, kind, payload, refs in items:
        if kind == INLINE:
            messages.append((port_id, payload))
        elif kind == PICKLED:
            messages.append((port_id, decode_pickled(payload, refs)))
        else:
            messages.append((port_id, next(fetched)))
    return messages


class Inbox:
    """Reorders each sender's batches and hands their messages on, in order.

    Args:
        dispatch: Called with each batch's messages, in sending order.
    """

    def __init__(self, dispatch: Callable[[list[Message]], None]) -> None:
        self._dispatch = dispatch
        self._expected: dict[str, int] = {}
        self._held: dict[str, dict[int, list[Message]]] = {}

    def received(self, sender: str) -> int:
        """The last of ``sender``'s batches dispatched in order (-1: none yet)."""
        return self._expected.get(sender, 0) - 1

    def receive(self, sender: str, seq: int, messages: list[Message]) -> None:
        """Take batch ``seq`` from ``sender``; dispatch it and any held successors."""
        expected = self._expected.get(sender, 0)
        if seq != expected:
            if seq > expected:
                self._held.setdefault(sender, {})[seq] = messages
            return
        held = self._held.get(sender)
        while True:
            self._expected[sender] = expected + 1  # before dispatching: a failure must not stall
            self._dispatch(messages)
            expected += 1
            if not held or expected not in held:
                break
            messages = held.pop(expected)
        if held is not None and not held:
            del self._held[sender]
