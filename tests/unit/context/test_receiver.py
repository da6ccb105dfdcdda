"""Receiver: decoding, ordering, pausing and control records, without Ray."""

from __future__ import annotations

import asyncio
from typing import Any

from rayisolates._capability import Capability
from rayisolates._context.porttable import PortTable
from rayisolates._context.receiver import Receiver
from rayisolates._transport.codec import INLINE
from rayisolates._transport.mailbox import Mailbox
from rayisolates._transport.wire import CONTROL_PORT, Item


class Port:
    """A port's mailbox, read at once (no loop is bound: what is put stays queued)."""

    def __init__(self) -> None:
        self.mailbox: Mailbox[Any] = Mailbox(lambda: None, lambda consumer, message: None)

    @property
    def got(self) -> list[Any]:
        return list(self.mailbox._queue)


def inline(port_id: int, value: Any) -> Item:
    return (port_id, INLINE, value, None)


def make(on_control: Any = None) -> tuple[Receiver, Port, int, list[BaseException]]:
    ports = PortTable()
    port = Port()
    port_id = ports.open(port.mailbox, keep_alive=True)
    errors: list[BaseException] = []
    loop = asyncio.new_event_loop()
    return Receiver(ports, loop, errors.append, on_control), port, port_id, errors


def test_batches_reach_their_port_in_order_once() -> None:
    receiver, port, port_id, _ = make()
    receiver.accept("a", 1, [inline(port_id, 2)])
    receiver.accept("a", 0, [inline(port_id, 1)])
    receiver.accept("a", 0, [inline(port_id, 1)])
    assert port.got == [1, 2]
    assert receiver.received("a") == 1 and receiver.received_messages == 2


def test_messages_to_a_closed_port_are_dropped() -> None:
    receiver, port, port_id, _ = make()
    receiver.accept("a", 0, [inline(port_id + 1, "nobody")])
    assert port.got == []


def test_pause_holds_messages_until_every_pause_is_lifted() -> None:
    receiver, port, port_id, _ = make()
    first, second = Capability(), Capability()
    receiver.pause(first)
    receiver.pause(second)
    receiver.accept("a", 0, [inline(port_id, 1), inline(port_id, 1)])
    assert not receiver.resume(first)
    assert port.got == []
    assert (receiver.held(), receiver.received_messages) == (2, 0)
    assert receiver.resume(second)
    receiver.accept("a", 1, [inline(port_id, 2)])
    assert port.got == [1, 1, 2]
    assert (receiver.held(), receiver.received_messages) == (0, 3)


def test_control_records_act_while_paused() -> None:
    records: list[Any] = []
    receiver, port, port_id, _ = make(records.append)
    receiver.pause(Capability())
    receiver.accept("x/control", 0, [inline(CONTROL_PORT, "resume, please")])
    receiver.accept("a", 0, [inline(port_id, 1)])
    assert records == ["resume, please"] and port.got == []


def test_a_message_that_cannot_be_rebuilt_is_reported_and_the_sequence_goes_on() -> None:
    receiver, port, port_id, errors = make()
    receiver.accept("a", 0, [(port_id, 1, b"not a pickle", None)])
    receiver.accept("a", 1, [inline(port_id, "after")])
    assert len(errors) == 1 and port.got == ["after"]


def test_a_stopped_receiver_dispatches_nothing() -> None:
    receiver, port, port_id, _ = make()
    receiver.stop()
    receiver.accept("a", 0, [inline(port_id, 1)])
    assert port.got == []
