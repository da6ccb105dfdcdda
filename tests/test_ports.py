"""ReceivePort, RawReceivePort and SendPort between real isolates."""

from __future__ import annotations

import asyncio
import os
import pickle
import random
import socket
import threading
from typing import Any

import pytest

from rayisolates import Isolate, RawReceivePort, ReceivePort, SendPort

from . import entries
from .support import run

BURST = 20_000
PORT_ORDER_SEEDS = int(os.environ.get("PORT_ORDER_SEEDS", "30"))


async def spawn_echo() -> tuple[ReceivePort[Any], SendPort[Any]]:
    port: ReceivePort[Any] = ReceivePort()
    await Isolate.spawn(entries.echo, port.send_port)
    worker: SendPort[Any] = await anext(port)
    return port, worker


def test_burst_from_an_isolate_arrives_once_and_in_order() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(entries.burst, (port.send_port, "a", BURST), on_exit=port.send_port)
        received = []
        async for message in port:
            if message is None:
                break
            received.append(message)
        port.close()
        return received

    assert run(main()) == [("a", i) for i in range(BURST)]


def test_interleaved_senders_keep_their_own_order() -> None:
    senders = {"x": entries.burst, "y": entries.interleaved_burst, "z": entries.interleaved_burst}
    count = 5_000

    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        for tag, entry in senders.items():
            await Isolate.spawn(entry, (port.send_port, tag, count), on_exit=port.send_port)
        received, ended = [], 0
        async for message in port:
            if message is None:
                ended += 1
                if ended == len(senders):
                    break
            else:
                received.append(message)
        port.close()
        return received

    received = run(main())
    assert len(received) == count * len(senders)
    for tag in senders:
        assert [i for t, i in received if t == tag] == list(range(count))


def test_burst_from_main_arrives_once_and_in_order() -> None:
    async def main() -> Any:
        port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(entries.count_in_order, port.send_port)
        worker: SendPort[Any] = await anext(port)
        for i in range(BURST):
            worker.send(i)
        worker.send(None)
        report = await anext(port)
        port.close()
        return report

    assert run(main()) == (BURST, True, BURST)


def test_send_port_travels_to_a_third_isolate() -> None:
    async def main() -> list[Any]:
        port, echo = await spawn_echo()
        relay_port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(entries.forwarder, relay_port.send_port)
        relay: SendPort[Any] = await anext(relay_port)
        relay.send((echo, "to echo via the relay"))  # echo replies to main
        relay.send((relay_port.send_port, "back to main"))
        got = [await anext(port), await anext(relay_port)]
        echo.send(relay)  # a SendPort through the echo and back
        returned = await anext(port)
        relay.send(None)
        echo.send(None)
        await anext(port)
        port.close()
        relay_port.close()
        return [*got, returned == relay, hash(returned) == hash(relay)]

    assert run(main()) == ["to echo via the relay", "back to main", True, True]


def test_send_port_equality_survives_pickling() -> None:
    with ReceivePort[Any]() as port:
        copy = pickle.loads(pickle.dumps(port.send_port))
        assert copy == port.send_port and hash(copy) == hash(port.send_port)
        with ReceivePort[Any]() as other:
            assert other.send_port != port.send_port


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (threading.Lock, "lock"),
        (socket.socket, "socket"),
        (lambda: open(__file__), "TextIOWrapper"),  # noqa: SIM115
        (lambda: (i for i in range(3)), "generator"),
        (ReceivePort, "cannot be sent"),
    ],
)
def test_unsendable_message_is_refused_and_the_port_keeps_working(make: Any, named: str) -> None:
    async def main() -> list[Any]:
        port, worker = await spawn_echo()
        bad = make()
        try:
            with pytest.raises(TypeError, match=named) as caught:
                worker.send({"fine": 1, "bad": [bad]})
            assert "message['bad'][0]" in str(caught.value)
        finally:
            for closer in ("close",):
                if hasattr(bad, closer):
                    getattr(bad, closer)()
        worker.send("still works")
        reply = await anext(port)
        worker.send(None)
        await anext(port)
        port.close()
        return [reply]

    assert run(main()) == ["still works"]


def test_sending_to_a_closed_port_is_silently_dropped() -> None:
    async def main() -> list[Any]:
        port, worker = await spawn_echo()
        closed: ReceivePort[Any] = ReceivePort()
        closed.close()
        closed.send_port.send("lost")
        worker.send((closed.send_port, "x"))
        worker.send("after")
        got = [await anext(port), await anext(port)]
        worker.send(None)
        await anext(port)
        port.close()
        return got

    first, second = run(main())
    assert first[1] == "x" and second == "after"


def test_messages_arriving_before_a_listener_are_kept() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        ended: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(entries.burst, (port.send_port, "early", 50), on_exit=ended.send_port)
        # The exit notice comes only once all the isolate sent was delivered:
        # by then every message is waiting in `port`, which nobody has read.
        assert await anext(ended) is None
        ended.close()
        port.close()  # closing keeps what already arrived
        return [message async for message in port]

    assert run(main()) == [("early", i) for i in range(50)]


def test_listen_without_an_event_loop() -> None:
    received: list[Any] = []
    finished = threading.Event()
    port: ReceivePort[Any] = ReceivePort()

    def on_data(message: Any) -> None:
        if message is None:
            port.close()
        else:
            received.append(message)

    port.listen(on_data, on_done=finished.set)
    Isolate.spawn(entries.burst, (port.send_port, "l", 100), on_exit=port.send_port).result(60)
    assert finished.wait(60)
    assert received == [("l", i) for i in range(100)]
    with pytest.raises(RuntimeError, match="already"):
        port.listen(print)


def test_raw_receive_port_handler_and_keep_alive() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(
            entries.keep_alive_optional, (port.send_port, False), on_exit=port.send_port
        )
        first = [await anext(port), await anext(port)]  # its port, then: ended at once
        await Isolate.spawn(entries.keep_alive_optional, (port.send_port, True))
        raw: SendPort[Any] = await anext(port)
        raw.send("to raw")
        second = await anext(port)
        port.close()
        return [type(first[0]).__name__, first[1], second]

    assert run(main()) == ["SendPort", None, ("raw", "to raw")]


def test_raw_receive_port_in_main_buffers_until_a_handler_is_set() -> None:
    got: list[Any] = []
    arrived = threading.Event()
    raw: RawReceivePort[Any] = RawReceivePort()
    raw.send_port.send("first")
    raw.send_port.send("second")

    def handler(message: Any) -> None:
        got.append(message)
        if len(got) == 2:
            arrived.set()

    raw.handler = handler
    assert arrived.wait(30)
    raw.close()
    raw.close()
    assert got == ["first", "second"]


def test_main_ports_keep_order_while_their_consumer_changes() -> None:
    """Sweep: messages from the main thread and from an isolate, handlers set and cleared meanwhile.

    The main isolate's ports are consumed on its background loop while the
    user's thread changes handlers; per sender, order must hold and every
    message must arrive once (a handler set after two sends once saw them
    swapped).
    """
    forwarder_port: ReceivePort[Any] = ReceivePort()
    Isolate.spawn(entries.forwarder, forwarder_port.send_port).result(60)
    forward: SendPort[Any] = run(anext(forwarder_port))
    for seed in range(PORT_ORDER_SEEDS):
        check_port_order(seed, forward)
    forward.send(None)
    forwarder_port.close()


def check_port_order(seed: int, forward: SendPort[Any]) -> None:
    rng = random.Random(seed)
    count = rng.randint(1, 60)
    got: list[Any] = []
    all_in = threading.Event()

    def record(message: Any) -> None:
        got.append(message)
        if len(got) == 2 * count:
            all_in.set()

    raw = rng.random() < 0.5
    port: Any = RawReceivePort() if raw else ReceivePort()
    listen_at = rng.randrange(count)
    for i in range(count):
        port.send_port.send(("m", i))
        forward.send((port.send_port, ("i", i)))
        if raw and rng.random() < 0.3:
            port.handler = rng.choice([None, record])
        if not raw and i == listen_at:
            port.listen(record)
    if raw:
        port.handler = record
    assert all_in.wait(30), f"seed {seed}: {len(got)} of {2 * count}"
    port.close()
    for tag in "mi":
        assert [i for t, i in got if t == tag] == list(range(count)), f"seed {seed}"


def test_handlers_set_inside_a_finished_event_loop_still_get_messages() -> None:
    got: list[Any] = []
    arrived = threading.Event()

    def record(message: Any) -> None:
        got.append(message)
        if len(got) == 4:
            arrived.set()

    async def main() -> tuple[RawReceivePort[Any], ReceivePort[Any]]:
        raw: RawReceivePort[Any] = RawReceivePort(record)
        listened: ReceivePort[Any] = ReceivePort()
        listened.listen(record)
        raw.send_port.send(("raw", 0))
        listened.send_port.send(("listened", 0))
        return raw, listened

    raw, listened = asyncio.run(main())  # the loop they were set on is gone now
    raw.send_port.send(("raw", 1))
    listened.send_port.send(("listened", 1))
    assert arrived.wait(30), got
    raw.close()
    listened.close()
    assert sorted(got) == [("listened", 0), ("listened", 1), ("raw", 0), ("raw", 1)]


def test_closing_ends_iteration_and_is_idempotent() -> None:
    async def main() -> list[Any]:
        async with ReceivePort[Any]() as port:
            port.send_port.send(1)
            first = await anext(port)
        port.close()
        rest = [message async for message in port]
        return [first, rest, port.is_closed]

    assert run(main()) == [1, [], True]


def test_receive_port_cannot_be_pickled() -> None:
    with ReceivePort[Any]() as port, pytest.raises(TypeError, match="send its send_port"):
        pickle.dumps(port)


@pytest.mark.parametrize("node", ["head", "a"])
def test_a_busy_isolate_still_gets_its_messages_out(
    tmp_path: Any, node: str, ray_runtime: dict[str, Any]
) -> None:
    """Its loop blocked, on this node (direct channel) and on another (the driver's poll)."""
    stop_file = tmp_path / "stop"

    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(
            entries.busy_with_progress,
            (port.send_port, str(stop_file)),
            on_exit=port.send_port,
            resources={f"node_{node}": 1},
        )
        early = [await anext(port) for _ in range(3)]  # arrive while it is still computing
        stop_file.touch()
        rest = []
        async for message in port:
            if message is None:
                break
            rest.append(message)
        port.close()
        return early + rest

    got = run(main())
    assert got[:3] == [("progress", 0), ("progress", 1), ("progress", 2)]
    assert [step for _, step in got] == list(range(len(got)))
