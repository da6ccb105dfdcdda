"""Inbox: each sender's batches dispatched once, in order, whatever order they arrive in."""

from __future__ import annotations

import random

import pytest

from rayisolates._transport.inbox import Inbox


def make() -> tuple[Inbox[int], list[int]]:
    out: list[int] = []
    return Inbox(out.extend), out


def test_batches_in_order_are_dispatched_at_once() -> None:
    inbox, out = make()
    inbox.receive("a", 0, [1, 2])
    inbox.receive("a", 1, [3])
    assert out == [1, 2, 3]
    assert inbox.received("a") == 1


def test_an_early_batch_waits_for_the_ones_before_it() -> None:
    inbox, out = make()
    inbox.receive("a", 2, [3])
    inbox.receive("a", 1, [2])
    assert out == []
    assert inbox.received("a") == -1
    inbox.receive("a", 0, [1])
    assert out == [1, 2, 3]


def test_a_batch_seen_before_is_dropped() -> None:
    inbox, out = make()
    inbox.receive("a", 0, [1])
    inbox.receive("a", 2, [3])
    assert inbox.is_duplicate("a", 0) and inbox.is_duplicate("a", 2)
    assert not inbox.is_duplicate("a", 1)
    inbox.receive("a", 0, [1])
    inbox.receive("a", 2, [3])
    inbox.receive("a", 1, [2])
    assert out == [1, 2, 3]


def test_senders_have_sequences_of_their_own() -> None:
    inbox, out = make()
    inbox.receive("a", 1, [2])
    inbox.receive("b", 0, [10])
    inbox.receive("a", 0, [1])
    assert out == [10, 1, 2]


def test_forgetting_a_sender_drops_its_state() -> None:
    inbox, _ = make()
    inbox.receive("a", 0, [1])
    inbox.receive("b", 5, [1])
    assert inbox.senders() == 2
    inbox.forget("a")
    inbox.forget("b")
    assert inbox.senders() == 0


def test_a_failing_dispatch_does_not_stall_the_sequence() -> None:
    seen: list[int] = []

    def dispatch(batch: list[int]) -> None:
        seen.extend(batch)
        if batch == [2]:
            raise ValueError("handler failed")

    inbox: Inbox[int] = Inbox(dispatch)
    with pytest.raises(ValueError):
        inbox.receive("a", 1, [2])
        inbox.receive("a", 0, [1])
    inbox.receive("a", 2, [3])
    assert seen == [1, 2, 3]


@pytest.mark.parametrize("seed", range(200))
def test_any_arrival_order_with_repeats_dispatches_each_once_in_order(seed: int) -> None:
    rng = random.Random(seed)
    senders = {name: rng.randint(1, 30) for name in "abc"}
    arrivals = [(name, seq) for name, count in senders.items() for seq in range(count)]
    arrivals += rng.sample(arrivals, k=len(arrivals) // 3)  # sent again after a failed call
    rng.shuffle(arrivals)
    out: list[tuple[str, int]] = []
    inbox: Inbox[tuple[str, int]] = Inbox(out.extend)
    for name, seq in arrivals:
        inbox.receive(name, seq, [(name, seq)])
    for name, count in senders.items():
        assert [seq for sender, seq in out if sender == name] == list(range(count))
        assert inbox.received(name) == count - 1
