"""Sending while holding a lock that a port handler takes never deadlocks.

The transport dispatches to a port's handler while it orders what arrived;
a thread that holds the handler's lock and sends to another isolate must
not wait for that ordering in turn. Each case floods a port whose handler
takes a lock with messages from the object store (dispatched on the main
isolate's event loop) while a thread, holding the same lock, sends messages
that go over Ray (they carry an isolate's port) to an answering isolate.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from rayisolates import Isolate, RawReceivePort, ReceivePort

from . import entries
from .support import run

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("seed", range(8))
def test_a_sender_holding_a_handlers_lock_does_not_deadlock(
    ray_runtime: dict[str, Any], seed: int
) -> None:
    rng = random.Random(seed)
    floods, sends = rng.randint(300, 600), rng.randint(100, 300)
    lock = threading.Lock()
    handled: list[int] = []
    all_handled = threading.Event()

    def handler(message: Any) -> None:
        with lock:
            handled.append(message[0])
            if len(handled) == floods:
                all_handled.set()

    flooded = RawReceivePort(handler, "flooded")
    echoed: list[int] = []
    echo_arrived = threading.Semaphore(0)

    def on_echo(message: Any) -> None:
        if isinstance(message, tuple):
            echoed.append(message[0])
            echo_arrived.release()

    echoes = RawReceivePort(on_echo, "echoes")
    replies: ReceivePort[Any] = ReceivePort("replies")

    async def start() -> Any:
        await Isolate.spawn(entries.answer_to, replies.send_port)
        return await anext(replies)

    echo_port = run(start())
    replies.close()

    def send_under_the_lock() -> None:
        # One at a time, each echoed before the next: every send leaves from this thread,
        # with the lock held (the transport sends later ones from its own threads).
        for i in range(sends):
            with lock:
                # An isolate's port inside (its actor handle): over Ray.
                echo_port.send((i, echoes.send_port, echo_port))
            assert echo_arrived.acquire(timeout=30)

    sender = threading.Thread(target=send_under_the_lock, daemon=True)
    run(Isolate.spawn(entries.flood_stored, (flooded.send_port, floods)))
    sender.start()
    sender.join(90)
    assert not sender.is_alive(), "the sender deadlocked with the port's handler"
    assert all_handled.wait(60), f"{len(handled)} of {floods} flood messages handled"
    assert handled == list(range(floods))
    assert echoed == list(range(sends))
    echo_port.send(None)
    flooded.close()
    echoes.close()
