"""The isolate side of the chaos test: all-to-all numbered traffic, checked as it arrives."""

from __future__ import annotations

import asyncio
import collections
import os
from typing import Any

from rayisolates import ReceivePort, SendPort


async def member(setup: tuple[SendPort[Any], str]) -> None:
    """Send ``(name, n)`` to every target, ``rounds`` times; check what arrives.

    Protocol with the main isolate (``reply``): announce ``("ready", name,
    pid, commands, inbox)``; take ``("go", targets, rounds)`` (targets: name
    -> SendPort, this isolate's own inbox and the main isolate's included);
    report ``("sent", name, counts)``; take ``("expect", {sender: count})``
    and answer ``("report", name, counts, violations)`` once that much has
    arrived; end on ``("stop",)``.
    """
    reply, name = setup
    inbox: ReceivePort[tuple[str, int]] = ReceivePort(f"{name}.inbox")
    commands: ReceivePort[Any] = ReceivePort(f"{name}.commands")
    received: collections.Counter[str] = collections.Counter()
    violations: list[str] = []
    expected: dict[str, int] | None = None

    def report_if_complete() -> None:
        nonlocal expected
        if expected is not None and all(received[s] >= n for s, n in expected.items()):
            expected = None
            reply.send(("report", name, dict(received), violations))

    def arrived(message: tuple[str, int]) -> None:
        sender, n = message
        if n != received[sender]:
            violations.append(f"{sender} -> {name}: got {n}, expected {received[sender]}")
        received[sender] = max(received[sender], n + 1)
        report_if_complete()

    inbox.listen(arrived)
    reply.send(("ready", name, os.getpid(), commands.send_port, inbox.send_port))
    async for command in commands:
        if command[0] == "go":
            _, targets, rounds = command
            sent: collections.Counter[str] = collections.Counter()
            for round_number in range(rounds):
                for target_name, target in targets.items():
                    target.send((name, sent[target_name]))
                    sent[target_name] += 1
                if round_number % 5 == 0:
                    await asyncio.sleep(0)
            reply.send(("sent", name, dict(sent)))
        elif command[0] == "expect":
            expected = command[1]
            report_if_complete()
        elif command[0] == "dump":  # what has arrived so far, for a failure's diagnosis
            reply.send(("dump", name, dict(received), violations))
        elif command[0] == "stop":
            break
    inbox.close()
    commands.close()
