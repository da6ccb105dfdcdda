"""A program for ``test_status.py`` to inspect from another process while it runs.

Spawns three named isolates from ``init``'s isolate pool: one idle, one on
node ``a`` that sends the main isolate ``TALKS`` messages, one paused and
then flooded with ``FLOOD`` messages (so its queue grows); a pool that
has run ``POOL_TASKS`` tasks; and a worker with ``WORKER_HELD`` calls
running (held at a gate) after one that completed. Says ``ready`` (a JSON line) once all of that
is in place, and ends at the next line on stdin.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import ray

from rayisolates import Isolate, IsolatePool, IsolateWorker, ReceivePort, SendPort, init

from .worker_entries import Recorder

TALKS = 10
FLOOD = 1000
POOL_TASKS = 5
WORKER_HELD = 2


async def idle(reply: SendPort[Any]) -> None:
    """Opens a port, hands it over, and waits on it."""
    port: ReceivePort[Any] = ReceivePort("idle")
    reply.send(("idle", port.send_port))
    await anext(port)


async def talker(reply: SendPort[Any]) -> None:
    """Sends the main isolate ``TALKS`` messages, then waits."""
    port: ReceivePort[Any] = ReceivePort("talker")
    for i in range(TALKS):
        reply.send(("talk", i))
    reply.send(("talker", port.send_port))
    await anext(port)


async def flooded(reply: SendPort[Any]) -> None:
    """Hands its port over and handles nothing while paused."""
    port: ReceivePort[Any] = ReceivePort("flood")
    reply.send(("flooded", port.send_port))
    async for _ in port:
        pass


def square(x: int) -> int:
    return x * x


async def main() -> None:
    init(isolate_pool=3)
    nodes = {
        name: node["NodeID"]
        for node in ray.nodes()
        for name in ("head", "a", "b")
        if f"node_{name}" in node["Resources"]
    }
    replies: ReceivePort[Any] = ReceivePort("replies")
    await Isolate.spawn(idle, replies.send_port, debug_name="status-idle")
    far: dict[str, Any] = (
        {"resources": {"node_a": 1}} if "a" in nodes else {}
    )  # the session cluster's
    await Isolate.spawn(talker, replies.send_port, debug_name="status-talker", **far)
    flood = await Isolate.spawn(flooded, replies.send_port, debug_name="status-flooded")
    ports: dict[str, SendPort[Any]] = {}
    talks = 0
    while len(ports) < 3 or talks < TALKS:
        message = await anext(replies)
        if message[0] == "talk":
            talks += 1
        else:
            ports[message[0]] = message[1]
    flood.pause()
    # Control records act in the order sent: once the ping is answered, the pause holds.
    pong: ReceivePort[Any] = ReceivePort("pong")
    flood.ping(pong.send_port, "paused")
    assert await anext(pong) == "paused"
    for i in range(FLOOD):
        ports["flooded"].send(i)
    pool = IsolatePool(2, debug_name="status-pool")
    assert [await pool.run(square, i) for i in range(POOL_TASKS)] == [0, 1, 4, 9, 16]
    worker = await IsolateWorker.spawn(Recorder, debug_name="status-worker")
    assert await worker.add(1) == 1
    gates: ReceivePort[Any] = ReceivePort("gates")
    held = [worker.gate(gates.send_port) for _ in range(WORKER_HELD)]
    opened = [await anext(gates) for _ in range(WORKER_HELD)]
    print(
        json.dumps(
            {
                "event": "ready",
                "job_id": ray.get_runtime_context().get_job_id(),
                "pid": os.getpid(),
                "nodes": nodes,
            }
        ),
        flush=True,
    )
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for gate in opened:
        gate.send("go")
    await asyncio.gather(*held)
    await worker.aclose()
    await pool.aclose()


if __name__ == "__main__":
    asyncio.run(main())
