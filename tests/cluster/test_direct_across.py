"""Direct channels between nodes (TCP), on real Ray nodes: used, and invisible when they break.

The session's cluster runs its nodes on this machine, so TCP goes over
loopback; ``test_netns.py`` runs the same transport between network
namespaces, with links cut and healed.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from rayisolates import Isolate, ReceivePort, SendPort
from rayisolates._context.connection import across_nodes
from rayisolates._context.context import current

from .. import entries
from ..support import relay_through_breaks, run

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not across_nodes(), reason="direct channels between nodes are off (RAYISOLATES_DIRECT*)"
    ),
]

ON_A: dict[str, Any] = {"resources": {"node_a": 1}}
ON_B: dict[str, Any] = {"resources": {"node_b": 1}}


def main_carried() -> int:
    endpoint = current().endpoint
    assert endpoint is not None
    return endpoint.carried


def test_requests_with_reply_ports_cross_nodes_directly() -> None:
    """Main <-> node a and node a <-> node b, a reply port in every request: answers right,
    and almost all of it carried by direct channels (the first few may ride Ray while
    the connection is made)."""

    async def main() -> None:
        port: ReceivePort[Any] = ReceivePort()
        answering = await Isolate.spawn(entries.answer_on_given_port, port.send_port, **ON_B)
        target: SendPort[Any] = await anext(port)
        before = main_carried()
        replies: ReceivePort[Any] = ReceivePort()
        for i in range(200):
            target.send((i, replies.send_port))
            assert await anext(replies) == i
        assert main_carried() - before >= 150  # main -> b
        target.send(("carried", replies.send_port))
        assert await anext(replies) >= 150  # b -> main
        asking = await Isolate.spawn(entries.ask_many, (target, 200, port.send_port), **ON_A)
        right, carried_by_a = await anext(port)
        assert right and carried_by_a >= 150  # a -> b
        target.send(("carried", replies.send_port))
        assert await anext(replies) >= 150 + 150  # and b -> a
        answering.kill()
        asking.kill()
        port.close()
        replies.close()

    run(main(), timeout=200)


@pytest.mark.parametrize("seed", range(3))
def test_channels_severed_at_random_across_nodes_lose_nothing(seed: int) -> None:
    """Main (head) -> A (node a) -> B (node b), and A -> main, while A's connections, and
    main's, break at random and come back: every message once, in order."""
    rng = random.Random(seed)
    count = 3000

    endpoint = current().endpoint
    assert endpoint is not None

    async def breaks(i: int, a: SendPort[Any]) -> None:
        if rng.random() < 0.003:
            a.send("sever")
        if rng.random() < 0.002:
            endpoint.sever()
        if rng.random() < 0.02:
            await asyncio.sleep(0.001)

    run(relay_through_breaks(count, ON_A, ON_B, breaks), timeout=200)
