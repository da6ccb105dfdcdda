"""The isolate side of the model-based transport tests: a member that follows commands.

Messages are ``(sender, port_key, n)``: ``n`` counts what ``sender`` sent to
the port named ``port_key``, so a receiver's record says at a glance whether
each sender's messages arrived once and in order. With the "riders" style
some carry a fourth element that must travel over Ray (a ``SendPort``, or
bytes large enough for the object store) while the others may take a
direct channel: a sender's messages then cross on both carriers at once.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from rayisolates import ReceivePort, SendPort

Message = tuple[str, str, int]
LARGE = 120 * 1024  # above the codec's 100 KiB: into the object store


def message(sender: str, key: str, n: int, j: int, style: str, port: SendPort[Any]) -> Any:
    """The ``j``-th message of a burst; with "riders", every 25th carries something for Ray."""
    if style != "riders" or j % 25:
        return (sender, key, n)
    return (sender, key, n, bytes(LARGE) if j % 50 == 0 else port)


class _Member:
    """Recording ports, and the commands that drive one member."""

    def __init__(self, reply: SendPort[Any], name: str, port_count: int) -> None:
        self.reply, self.name, self.port_count = reply, name, port_count
        self.records: dict[int, list[Message]] = {}
        self.expected: dict[int, int] | None = None
        self.ports: list[ReceivePort[Message]] = []
        self.counters: collections.Counter[str] = collections.Counter()
        self.commands: ReceivePort[Any] = ReceivePort(f"{name}.commands")

    def check(self) -> None:
        expected = self.expected
        if expected is not None and all(len(self.records[i]) >= n for i, n in expected.items()):
            self.expected = None
            self.reply.send(("complete", self.name, self.records))

    def recorder(self, index: int) -> Any:
        def record(message: tuple[Any, ...]) -> None:
            self.records[index].append(message[:3])
            self.check()

        return record

    def start_afresh(self) -> None:
        """Close the ports, open new ones, forget everything; announce the new ports."""
        for old in self.ports:
            old.close()
        self.ports = []
        self.counters.clear()
        self.expected = None
        for index in range(self.port_count):
            self.records[index] = []
            port: ReceivePort[Message] = ReceivePort(f"{self.name}.p{index}")
            port.listen(self.recorder(index))
            self.ports.append(port)
        ports = [port.send_port for port in self.ports]
        self.reply.send(("ready", self.name, self.commands.send_port, ports))

    async def send(self, target: SendPort[Any], key: str, count: int, style: str) -> None:
        for j in range(count):
            target.send(message(self.name, key, self.counters[key], j, style, self.reply))
            self.counters[key] += 1
            if style == "yield" and j % 7 == 0:
                await asyncio.sleep(0)
            elif style == "busy" and j % 50 == 49:
                time.sleep(0.002)


async def member(setup: tuple[SendPort[Any], str, int]) -> None:
    """Open ``port_count`` recording ports, announce them, then follow commands.

    Commands (tuples): ``("send", target, key, count, style)`` sends
    ``count`` messages to ``target`` (``style``: "tight", "yield",
    "busy" or "riders"); ``("busy", seconds)`` blocks the event loop; ``("close", i)``
    closes port ``i``; ``("expect", {i: count})`` answers ``("complete",
    name, records)`` once port ``i`` holds ``count`` messages, for every
    ``i``; ``("reset",)`` starts afresh with new ports (announced again);
    ``("dump",)`` answers what has arrived so far; ``("stop",)`` ends.
    """
    me = _Member(*setup)
    me.start_afresh()
    async for command in me.commands:
        kind = command[0]
        if kind == "send":
            await me.send(*command[1:])
        elif kind == "busy":
            time.sleep(command[1])
        elif kind == "close":
            me.ports[command[1]].close()
        elif kind == "expect":
            me.expected = command[1]
            me.check()
        elif kind == "reset":
            me.start_afresh()
        elif kind == "dump":  # what has arrived so far, for a failure's diagnosis
            me.reply.send(("dump", me.name, me.records))
        elif kind == "stop":
            break
    for port in me.ports:
        port.close()
    me.commands.close()
