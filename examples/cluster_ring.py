"""Isolates spread over every node of the cluster pass a token round a ring.

One isolate per alive Ray node (at least three), each pinned to its node;
each gets its successor's ``SendPort``, and a token goes round the ring a
few laps. Runs on a local Ray, or on a cluster with ``RAY_ADDRESS`` set.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rayisolates import Isolate, ReceivePort, SendPort, init

LAPS = 3


async def ring_member(job: tuple[int, SendPort[Any]]) -> None:
    """Report where we run; then forward the token to our successor until it runs out."""
    index, reply = job
    inbox: ReceivePort[Any] = ReceivePort(f"ring-{index}")
    node = ray.get_runtime_context().get_node_id()
    reply.send(("joined", index, inbox.send_port, node, socket.gethostname()))
    successor: SendPort[Any] = await anext(inbox)
    async for token in inbox:
        if token is None:
            break
        hops_left, path = token
        if hops_left == 0:
            reply.send(("finished", [*path, index]))
        else:
            successor.send((hops_left - 1, [*path, index]))
    inbox.close()


async def main() -> None:
    nodes = sorted(node["NodeID"] for node in ray.nodes() if node["Alive"])
    placements = [nodes[i % len(nodes)] for i in range(max(3, len(nodes)))]
    replies: ReceivePort[Any] = ReceivePort("ring")
    for index, node in enumerate(placements):
        await Isolate.spawn(
            ring_member,
            (index, replies.send_port),
            debug_name=f"ring-{index}",
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        )
    members: dict[int, tuple[SendPort[Any], str, str]] = {}
    while len(members) < len(placements):
        _, index, port, node, host = await anext(replies)
        members[index] = (port, node, host)
    for index, (port, _, _) in members.items():
        port.send(members[(index + 1) % len(members)][0])
    for index, (_, node, host) in sorted(members.items()):
        print(f"Isolate ring-{index} runs on node {node[:12]} ({host})")

    hops = LAPS * len(members)
    started = time.perf_counter()
    members[0][0].send((hops, []))
    kind, path = await anext(replies)
    elapsed = time.perf_counter() - started
    assert kind == "finished" and path == [i % len(members) for i in range(hops + 1)]
    print(
        f"The token went {LAPS} laps ({hops} hops) round {len(members)} isolates on "
        f"{len(set(nodes))} node(s) in {elapsed * 1000:.1f} ms"
    )
    for port, _, _ in members.values():
        port.send(None)
    replies.close()


if __name__ == "__main__":
    init()  # the node list is needed before the first isolate starts Ray
    asyncio.run(main())
