"""Sender: where each message goes, and the one-way switch of the main isolate's messages."""

from __future__ import annotations

from typing import Any

from rayisolates._context.sender import Sender
from rayisolates._sendport import SendPort
from rayisolates._transport.mainlink import HostLink
from rayisolates._transport.outbox import Outbox

from ..fakes import Calls, Later, inline

MAIN = "main-1"


def make(reachable: bool) -> tuple[Sender, HostLink, Calls, Calls]:
    isolate_calls, main_calls = Calls(), Calls()
    link = HostLink(lambda: None, lambda: None)
    sender = Sender(
        "isolate-1",
        Outbox("isolate-1", isolate_calls.transmit, schedule=Later(), on_done=inline),
        Outbox("isolate-1", Calls().transmit, schedule=Later(), on_done=inline),
        supervisor=lambda: "supervisor",
        main=(MAIN, link),
        to_main=(
            Outbox("isolate-1/direct", main_calls.transmit, schedule=Later(), on_done=inline),
            lambda: reachable,
        ),
    )
    return sender, link, isolate_calls, main_calls


def to_main(port_id: int = 1) -> SendPort[Any]:
    return SendPort(MAIN, port_id, None)


def encoded(n: int) -> tuple[int, Any, None]:
    return (0, n, None)


def sent_directly(calls: Calls) -> list[Any]:
    return [value for call in calls.made for _, _, value, _ in call.batch]


def test_a_reachable_main_isolate_gets_messages_directly_from_the_first() -> None:
    sender, link, _, main_calls = make(reachable=True)
    for n in range(3):
        sender.send(to_main(), encoded(n))
    assert link.drained()
    assert [call.route for call in main_calls.made] == ["supervisor"] * len(main_calls.made)
    main_calls.made[0].succeed()
    assert sent_directly(main_calls) == [0, 1, 2]


def test_an_unreachable_main_isolate_gets_everything_over_the_link() -> None:
    sender, link, _, main_calls = make(reachable=False)
    for n in range(3):
        sender.send(to_main(), encoded(n))
    assert main_calls.made == []
    assert not link.drained()
    (answer,) = link.poll(-1, None).batches
    assert [value for _, _, value, _ in answer[1]] == [0, 1, 2]


def test_the_switch_waits_until_the_driver_has_what_went_over_the_link() -> None:
    """Messages keep to the link while it holds anything unacknowledged; then direct, for good."""
    sender, link, _, main_calls = make(reachable=True)
    link.add((1, 0, "before", None))  # as if sent before the driver was reachable
    sender.send(to_main(), encoded(1))
    assert main_calls.made == []  # behind "before", on the link
    (first,) = link.poll(-1, None).batches
    assert [value for _, _, value, _ in first[1]] == ["before", 1]
    sender.send(to_main(), encoded(2))  # handed over but not acknowledged: still the link
    (second,) = link.poll(-1, None).batches
    assert [value for _, _, value, _ in second[1]] == [2]
    assert main_calls.made == []
    link.acknowledge(second[0], None)
    sender.send(to_main(), encoded(3))  # the driver has everything: direct from now on
    sender.send(to_main(), encoded(4))
    main_calls.made[0].succeed()
    assert sent_directly(main_calls) == [3, 4]
    assert link.drained()


def test_other_isolates_and_own_ports_are_not_the_main_isolate() -> None:
    sender, link, isolate_calls, main_calls = make(reachable=True)
    sender.send(SendPort("isolate-2", 3, "route-2"), encoded(7))
    assert [(call.destination, call.route) for call in isolate_calls.made] == [
        ("isolate-2", "route-2")
    ]
    assert main_calls.made == [] and link.drained()
