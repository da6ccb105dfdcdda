"""Direct channels between isolates on one node, on real Ray: used where they can be,
invisible where they break, and off at the flip of a switch."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from rayisolates import Isolate, ReceivePort, SendPort
from rayisolates._context.connection import direct_channels
from rayisolates._context.context import current

from . import entries
from .support import relay_through_breaks, run, run_python

pytestmark = pytest.mark.timeout(180)

needs_direct = pytest.mark.skipif(
    not direct_channels(), reason="direct channels are switched off (RAYISOLATES_DIRECT=0)"
)

ON_THE_HEAD: dict[str, Any] = {"resources": {"node_head": 1}}  # the driver's node


def main_endpoint() -> Any:
    return current().endpoint


@needs_direct
def test_isolates_on_the_drivers_node_listen_privately_and_clean_up() -> None:
    async def main() -> None:
        port: ReceivePort[Any] = ReceivePort()
        isolate = await Isolate.spawn(entries.echo, port.send_port, **ON_THE_HEAD)
        worker: SendPort[Any] = await anext(port)
        for i in range(50):
            worker.send(i)
        assert [await anext(port) for _ in range(50)] == list(range(50))
        listening = entries.direct_sockets()
        assert worker.isolate_id in listening
        assert current().isolate_id in listening
        assert main_endpoint().reachable(worker.isolate_id)
        isolate.add_on_exit_listener(port.send_port, "ended")
        worker.send(None)
        assert [await anext(port), await anext(port)] == ["bye", "ended"]
        assert worker.isolate_id not in entries.direct_sockets()
        port.close()

    run(main())


@needs_direct
@pytest.mark.parametrize("seed", range(4))
def test_channels_cut_mid_stream_fall_back_to_ray_losing_nothing(seed: int) -> None:
    """Main -> A -> B and A -> main while A's channels, and main's to A, break at random."""
    rng = random.Random(seed)
    count = 3000

    cut_at = rng.randrange(count)

    async def breaks(i: int, a: SendPort[Any]) -> None:
        if i == cut_at:
            a.send("cut")
        if rng.random() < 0.002:
            main_endpoint().forget(a.isolate_id)  # main's side breaks; it reconnects
        if rng.random() < 0.01:
            await asyncio.sleep(0)

    run(relay_through_breaks(count, ON_THE_HEAD, ON_THE_HEAD, breaks), timeout=150)


def test_the_switch_turns_direct_channels_off(ray_runtime: dict[str, Any]) -> None:
    output = run_python(
        "import asyncio, rayisolates\n"
        "from rayisolates import Isolate, ReceivePort\n"
        "from tests import entries\n"
        "async def main():\n"
        "    port = ReceivePort()\n"
        "    await Isolate.spawn(entries.echo, port.send_port)\n"
        "    worker = await anext(port)\n"
        "    for i in range(200):\n"
        "        worker.send(i)\n"
        "    assert [await anext(port) for _ in range(200)] == list(range(200))\n"
        "    here = entries.direct_sockets()\n"
        "    print('LISTENING', worker.isolate_id in here)\n"
        f"rayisolates.init(address={ray_runtime['gcs_address']!r})\n"
        "asyncio.run(main())\n"
        "rayisolates.shutdown()\n",
        env={"RAYISOLATES_DIRECT": "0"},
        timeout=120,
    )
    assert "LISTENING False" in output


@needs_direct
def test_messages_carrying_ports_take_the_direct_channel() -> None:
    """Dart's request/reply idiom (a reply port in each request) stays off Ray on one node,
    both ways, with ``Isolate`` handles and control records too; the ports work after
    travelling and stay equal to the originals."""

    async def main() -> None:
        port: ReceivePort[Any] = ReceivePort()
        isolate = await Isolate.spawn(entries.answer_on_given_port, port.send_port, **ON_THE_HEAD)
        requests: SendPort[Any] = await anext(port)
        carried = main_endpoint().carried
        replies: list[ReceivePort[Any]] = [ReceivePort() for _ in range(3)]
        for i in range(300):
            requests.send((i, replies[i % 3].send_port))
        got = [await anext(replies[i % 3]) for i in range(300)]
        assert got == list(range(300))
        requests.send((isolate, port.send_port))  # an Isolate handle, there and back
        back = await anext(port)
        assert back == isolate and back.control_port == isolate.control_port
        resume = isolate.pause()  # control records name ports: direct too
        isolate.resume(resume)
        isolate.ping(port.send_port, "pong", priority=Isolate.BEFORE_NEXT_EVENT)
        assert await anext(port) == "pong"
        assert main_endpoint().carried - carried >= 300 + 1 + 3
        isolate.kill()
        for reply in [port, *replies]:
            reply.close()

    run(main())
