"""Outbox: batching within a window, retrying with the same number, dropping for the dead."""

from __future__ import annotations

import asyncio
import random

import pytest

from rayisolates._transport.inbox import Inbox
from rayisolates._transport.outbox import MAX_IN_FLIGHT, Outbox

from ..fakes import Call, Calls, Later, died, inline, unavailable


def make(window: int = MAX_IN_FLIGHT) -> tuple[Outbox[int], Calls, Later]:
    calls, later = Calls(), Later()
    outbox: Outbox[int] = Outbox(
        "me", calls.transmit, window=window, schedule=later, on_done=inline
    )
    return outbox, calls, later


def test_a_lone_message_leaves_at_once() -> None:
    outbox, calls, _ = make()
    outbox.add("x", "route-x", 1)
    (call,) = calls.made
    assert (call.destination, call.route, call.sender, call.seq, call.batch) == (
        "x",
        "route-x",
        "me",
        0,
        [1],
    )


def test_beyond_the_window_messages_gather_into_one_batch() -> None:
    outbox, calls, _ = make(window=2)
    for i in range(5):
        outbox.add("x", None, i)
    assert [call.batch for call in calls.made] == [[0], [1]]
    calls.made[0].succeed()
    assert [call.batch for call in calls.made] == [[0], [1], [2, 3, 4]]
    assert [call.seq for call in calls.made] == [0, 1, 2]


def test_destinations_have_windows_and_numbers_of_their_own() -> None:
    outbox, calls, _ = make(window=1)
    outbox.add("x", None, 1)
    outbox.add("y", None, 2)
    outbox.add("x", None, 3)
    assert [(call.destination, call.seq, call.batch) for call in calls.made] == [
        ("x", 0, [1]),
        ("y", 0, [2]),
    ]


def test_an_unavailable_destination_gets_the_same_batch_again() -> None:
    outbox, calls, later = make()
    outbox.add("x", None, 1)
    calls.made[0].fail(unavailable())
    assert len(calls.made) == 1 and outbox.busy()
    later.run_all()
    retry = calls.made[1]
    assert (retry.seq, retry.batch) == (0, [1])
    retry.succeed()
    assert not outbox.busy()


def test_a_dead_destination_drops_what_is_queued_and_what_comes() -> None:
    outbox, calls, _ = make(window=1)
    outbox.add("x", None, 1)
    outbox.add("x", None, 2)
    calls.made[0].fail(died())
    assert not outbox.busy()
    outbox.add("x", None, 3)
    assert len(calls.made) == 1


def test_a_retry_pending_for_a_destination_found_dead_is_not_made() -> None:
    outbox, calls, later = make(window=2)
    outbox.add("x", None, 1)
    outbox.add("x", None, 2)
    calls.made[0].fail(unavailable())
    calls.made[1].fail(died())
    later.run_all()
    assert len(calls.made) == 2


def test_a_method_that_raises_counts_as_delivered_and_the_channel_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox, calls, _ = make(window=1)
    outbox.add("x", None, 1)
    outbox.add("x", None, 2)
    calls.made[0].fail(ValueError("bug"))
    assert "delivering to x failed" in caplog.text
    assert calls.made[1].batch == [2]


def test_a_transmit_that_cannot_even_start_is_reported_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object) -> object:
        raise RuntimeError("Ray is not connected")

    outbox: Outbox[int] = Outbox("me", broken)  # type: ignore[arg-type]
    outbox.add("x", None, 1)
    assert not outbox.busy()
    assert "Ray is not connected" in caplog.text


def test_drain_waits_until_everything_is_delivered() -> None:
    outbox, calls, _ = make()

    async def scenario() -> list[str]:
        events = []
        outbox.add("x", None, 1)
        draining = asyncio.ensure_future(outbox.drain())
        await asyncio.sleep(0)
        events.append("waiting" if not draining.done() else "done early")
        calls.made[0].succeed()
        await asyncio.wait_for(draining, 5)
        events.append("drained")
        return events

    assert asyncio.run(scenario()) == ["waiting", "drained"]


def test_forget_drops_a_channel() -> None:
    outbox, _, _ = make()
    outbox.add("x", None, 1)
    assert outbox.destinations() == 1
    outbox.forget("x")
    assert outbox.destinations() == 0 and not outbox.busy()


class Network:
    """Completes an outbox's calls at random: lost requests, lost replies, deaths."""

    def __init__(self, calls: Calls, later: Later, dying: set[str]) -> None:
        self.calls, self.later, self.dying = calls, later, dying
        self.dead: set[str] = set()
        self.received: dict[str, list[int]] = {}
        self.inboxes: dict[str, Inbox[int]] = {}

    def arrive(self, call: Call) -> None:
        if call.destination not in self.inboxes:
            self.received[call.destination] = []
            self.inboxes[call.destination] = Inbox(self.received[call.destination].extend)
        self.inboxes[call.destination].receive(call.sender, call.seq, call.batch)

    def step(self, rng: random.Random) -> None:
        if self.later.due and rng.random() < 0.3:
            self.later.run_all()
            return
        pending = self.calls.pending()
        if not pending:
            return
        call = rng.choice(pending)
        roll = rng.random()
        if call.destination in self.dying and roll < 0.05:
            self.dead.add(call.destination)
        if call.destination in self.dead:
            call.fail(died())
        elif roll < 0.15:  # the request was lost
            call.fail(unavailable())
        elif roll < 0.3:  # it ran, but its reply was lost
            self.arrive(call)
            call.fail(unavailable())
        else:
            self.arrive(call)
            call.succeed()

    def settle(self) -> None:
        while self.calls.pending() or self.later.due:
            self.later.run_all()
            for call in self.calls.pending():
                if call.destination in self.dead:
                    call.fail(died())
                else:
                    self.arrive(call)
                    call.succeed()


@pytest.mark.parametrize("seed", range(300))
def test_random_interleavings_deliver_each_message_once_in_order(seed: int) -> None:
    """Adds, completions, lost requests and lost replies in any order; some destinations die."""
    rng = random.Random(seed)
    outbox, calls, later = make(window=rng.randint(1, 3))
    destinations = ["a", "b", "c"]
    network = Network(calls, later, dying={d for d in destinations if rng.random() < 0.3})
    sent: dict[str, list[int]] = {d: [] for d in destinations}
    for message in range(rng.randint(1, 120)):
        destination = rng.choice(destinations)
        outbox.add(destination, None, message)
        sent[destination].append(message)
        while rng.random() < 0.6:
            network.step(rng)
    network.settle()
    assert not outbox.busy()
    for destination in destinations:
        got, expected = network.received.get(destination, []), sent[destination]
        if destination in network.dead:
            assert got == expected[: len(got)]  # a clean prefix
        else:
            assert got == expected
