"""A stream's credits, without ports or loops: random interleavings of making, carrying
and taking items and of credits travelling back, many seeds.

Checked at every step: at most ``buffer`` items made and not taken; credits conserved
(held + items on their way or waiting + owed + credits on their way == ``buffer``);
and, run to the end, every item taken (a consumer that keeps taking never leaves the
producer waiting for good), and nothing made after a stop arrives.
"""

from __future__ import annotations

import collections
import os
import random

import pytest

from rayisolates._stream.credits import Granted, Owed

SEEDS = int(os.environ.get("CREDIT_SEEDS", "2000"))


class Flow:
    """One producer and one consumer, the messages between them held in flight."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = rng = random.Random(seed)
        self.buffer = rng.choice([1, 2, 3, 4, 5, 7, 8, 16, 33, 64])
        self.wanted = rng.randint(0, 300)
        self.stop_after = rng.randint(0, self.wanted) if rng.random() < 0.3 else None
        self.granted, self.owed = Granted(self.buffer), Owed(self.buffer)
        self.items: collections.deque[int] = collections.deque()  # made, on their way
        self.queued: collections.deque[int] = collections.deque()  # arrived, not taken
        self.credits: collections.deque[int | None] = collections.deque()  # going back
        self.made = self.taken = 0
        self.stopped = False  # the consumer sent its stop

    def moves(self) -> list[str]:
        moves = []
        if self.made < self.wanted and self.granted.left > 0 and not self.granted.stopped:
            moves.append("make")
        if self.items:
            moves.append("carry")
        if self.queued and not self.stopped:
            moves.append("take")
        if self.credits:
            moves.append("credit")
        return moves

    def make(self) -> None:
        assert self.granted.spend() is True
        self.items.append(self.made)
        self.made += 1

    def carry(self) -> None:
        self.queued.append(self.items.popleft())

    def take(self) -> None:
        assert self.queued.popleft() == self.taken  # in order
        self.taken += 1
        back = self.owed.took()
        if back:
            self.credits.append(back)
        if self.stop_after is not None and self.taken >= self.stop_after:
            self.credits.append(None)
            self.stopped = True

    def credit(self) -> None:
        self.granted.received(self.credits.popleft())

    def check(self) -> None:
        seed, buffer = self.seed, self.buffer
        assert self.made - self.taken <= buffer, f"seed {seed}: made and not taken"
        if not self.stopped:
            in_flight = sum(c for c in self.credits if c is not None)
            held = self.granted.left + len(self.items) + len(self.queued) + self.owed.owed
            assert held + in_flight == buffer, f"seed {seed}: credits not conserved"


def check_flow(seed: int) -> None:
    flow = Flow(seed)
    while moves := flow.moves():
        getattr(flow, flow.rng.choice(moves))()
        flow.check()
    if flow.stopped:  # the stop arrived: nothing more is made
        assert flow.granted.stopped and flow.granted.spend() is False
    else:
        assert flow.taken == flow.made == flow.wanted, f"seed {seed}: stalled"


@pytest.mark.parametrize("chunk", range(4))
def test_credits_bound_what_is_made_and_never_stall(chunk: int) -> None:
    for seed in range(chunk, SEEDS, 4):
        check_flow(seed)


def test_spending_says_whether_to_make_wait_or_stop() -> None:
    granted = Granted(1)
    assert granted.spend() is True
    assert granted.spend() is None  # none left: wait
    granted.received(2)
    assert granted.spend() is True
    granted.received(None)
    assert granted.spend() is False and granted.left == 1


def test_credits_go_back_in_halves_of_the_buffer() -> None:
    owed = Owed(16)
    assert [owed.took() for _ in range(16)] == [0] * 7 + [8] + [0] * 7 + [8]
    assert [Owed(1).took(), Owed(3).took()] == [1, 1]
