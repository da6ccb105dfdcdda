"""The isolate side of the model-based transport tests: a member that follows commands.

Messages are ``(sender, port_key, n)``: ``n`` counts what ``sender`` sent to
the port named ``port_key``, so a receiver's record says at a glance whether
each sender's messages arrived once and in order.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from rayisolates import ReceivePort, SendPort

Message = tuple[str, str, int]


async def member(setup: tuple[SendPort[Any], str, int]) -> None:
    """Open ``port_count`` recording ports, announce them, then follow commands.

    Commands (tuples): ``("send", target, key, count, style)`` sends
    ``count`` messages to ``target`` (``style``: "tight", "yield" or
    "busy"); ``("busy", seconds)`` blocks the event loop; ``("close", i)``
    closes port ``i``; ``("expect", {i: count})`` answers ``("complete",
    name, records)`` once port ``i`` holds ``count`` messages, for every
    ``i``; ``("stop",)`` ends.
    """
    reply, name, port_count = setup
    records: dict[int, list[Message]] = {i: [] for i in range(port_count)}
    expected: dict[int, int] | None = None
    ports: list[ReceivePort[Message]] = []

    def check() -> None:
        nonlocal expected
        if expected is not None and all(len(records[i]) >= n for i, n in expected.items()):
            expected = None
            reply.send(("complete", name, records))

    def recorder(index: int) -> Any:
        def record(message: Message) -> None:
            records[index].append(message)
            check()

        return record

    for index in range(port_count):
        port: ReceivePort[Message] = ReceivePort(f"{name}.p{index}")
        port.listen(recorder(index))
        ports.append(port)
    commands: ReceivePort[Any] = ReceivePort(f"{name}.commands")
    reply.send(("ready", name, commands.send_port, [port.send_port for port in ports]))
    counters: collections.Counter[str] = collections.Counter()
    async for command in commands:
        kind = command[0]
        if kind == "send":
            _, target, key, count, style = command
            for j in range(count):
                target.send((name, key, counters[key]))
                counters[key] += 1
                if style == "yield" and j % 7 == 0:
                    await asyncio.sleep(0)
                elif style == "busy" and j % 50 == 49:
                    time.sleep(0.002)
        elif kind == "busy":
            time.sleep(command[1])
        elif kind == "close":
            ports[command[1]].close()
        elif kind == "expect":
            expected = command[1]
            check()
        elif kind == "dump":  # what has arrived so far, for a failure's diagnosis
            reply.send(("dump", name, records))
        elif kind == "stop":
            break
    for port in ports:
        port.close()
    commands.close()
