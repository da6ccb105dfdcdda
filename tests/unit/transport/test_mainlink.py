"""The link to the main isolate, both sides, with threads standing in for Ray's."""

from __future__ import annotations

import concurrent.futures
import random
import threading
import time
from typing import Any

import pytest

from rayisolates._transport.inbox import Inbox
from rayisolates._transport.mainlink import DriverLinks, HostLink
from rayisolates._transport.wire import LAST_ANSWER, Item, LinkAnswer

from ..fakes import died, inline, unavailable

WAIT = 5.0


def item(n: int) -> Item:
    return (1, 0, n, None)


class Host:
    """A HostLink with its poll thread (the actor's "poll" group has one thread)."""

    def __init__(self, **options: Any) -> None:
        self.requests = 0
        self.acks = 0
        self.link = HostLink(self._request, self._ack, **options)
        self.poll_thread = concurrent.futures.ThreadPoolExecutor(1)

    def _request(self) -> None:
        self.requests += 1

    def _ack(self) -> None:
        self.acks += 1

    def poll(self, ack: int, resend_from: int | None = None) -> concurrent.futures.Future[Any]:
        return self.poll_thread.submit(self.link.poll, ack, resend_from)


def values(answer: LinkAnswer) -> list[tuple[int, list[int]]]:
    return [(seq, [payload for _, _, payload, _ in items]) for seq, items in answer.batches]


def test_a_poll_waits_for_a_message_and_hands_it_over() -> None:
    host = Host()
    polling = host.poll(-1)
    time.sleep(0.05)
    assert not polling.done()
    host.link.add(item(7))
    assert values(polling.result(WAIT)) == [(0, [7])]


def test_what_is_added_while_no_poll_waits_leaves_as_one_batch() -> None:
    host = Host()  # never polled yet: the first add asks for a poll, once
    for n in range(3):
        host.link.add(item(n))
    assert host.requests == 1
    assert values(host.poll(-1).result(WAIT)) == [(0, [0, 1, 2])]


def test_no_poll_is_asked_for_by_an_isolate_already_polled() -> None:
    host = Host()
    polling = host.poll(-1)
    host.link.add(item(1))
    polling.result(WAIT)
    host.link.add(item(2))
    assert host.requests == 0


def test_batches_stay_until_acknowledged_and_are_handed_once() -> None:
    host = Host()
    host.link.add(item(1))
    assert values(host.poll(-1).result(WAIT)) == [(0, [1])]
    assert not host.link.drained()
    polling = host.poll(-1)  # not acknowledged, but handed already: not again
    time.sleep(0.05)
    assert not polling.done()
    host.link.add(item(2))
    assert values(polling.result(WAIT)) == [(1, [2])]
    host.link.acknowledge(1, None)
    assert host.link.drained() and host.acks == 1


def test_resend_from_hands_over_again_what_a_lost_reply_carried() -> None:
    host = Host()
    host.link.add(item(1))
    host.poll(-1).result(WAIT)
    host.link.add(item(2))
    host.poll(-1).result(WAIT)
    assert values(host.poll(0, resend_from=1).result(WAIT)) == [(1, [2])]


def test_a_deliver_from_main_carries_the_replies_in_its_own_reply() -> None:
    host = Host(reply_window=5.0)
    polling = host.poll(-1)
    host.link.begin_collecting()
    host.link.add(item(1))  # a handler answers
    time.sleep(0.05)
    assert not polling.done()  # the poll leaves it to the deliver's reply
    answer = host.link.end_collecting()
    assert answer is not None and values(answer) == [(0, [1])]
    time.sleep(0.05)
    assert not polling.done()
    host.link.add(item(2))
    assert values(polling.result(WAIT)) == [(1, [2])]


def test_the_poll_takes_over_replies_held_longer_than_the_window() -> None:
    host = Host(reply_window=0.05)
    polling = host.poll(-1)
    host.link.begin_collecting()
    host.link.add(item(1))  # ...and the handler blocks the loop: the deliver cannot end
    assert values(polling.result(WAIT)) == [(0, [1])]
    assert host.link.end_collecting() is None


def test_an_ending_isolate_comes_back_for_acks_then_answers_ended() -> None:
    host = Host(ending_poll=0.02)
    host.link.add(item(1))
    host.poll(-1).result(WAIT)
    host.link.begin_ending()
    assert host.poll(-1).result(WAIT) == LinkAnswer()  # empty: "acknowledge, please"
    polling = host.poll(0)
    time.sleep(0.05)
    assert host.link.drained() and not polling.done()
    host.link.end()
    assert polling.result(WAIT) is LAST_ANSWER


class Driver:
    """DriverLinks over an inbox, with a poll call that can lose requests and replies."""

    def __init__(self, host: Host, rng: random.Random, loss: float) -> None:
        self.host = host
        self.rng = rng
        self.loss = loss
        self.lock = threading.Lock()
        self.got: list[int] = []
        self.inbox: Inbox[int] = Inbox(self.got.extend)
        self.ended = threading.Event()
        self.links = DriverLinks(
            received=self.received,
            accept=self.accept,
            poll=self.poll,
            forget=lambda isolate_id: self.ended.set(),
            schedule=lambda delay, callback: threading.Timer(delay, callback).start(),
            on_done=inline,
            start=lambda first_poll: first_poll(),
        )

    def received(self, isolate_id: str) -> int:
        with self.lock:
            return self.inbox.received(isolate_id)

    def accept(self, isolate_id: str, seq: int, items: list[Item]) -> None:
        with self.lock:
            self.inbox.receive(isolate_id, seq, [payload for _, _, payload, _ in items])

    def lossy(self, work: concurrent.futures.Future[Any]) -> concurrent.futures.Future[Any]:
        """What the caller sees of a call: its result, or unavailable if its reply is lost."""
        seen: concurrent.futures.Future[Any] = concurrent.futures.Future()
        lose = self.rng.random() < self.loss

        def done(finished: concurrent.futures.Future[Any]) -> None:
            if lose:
                seen.set_exception(unavailable())
            else:
                seen.set_result(finished.result())

        work.add_done_callback(done)
        return seen

    def poll(self, route: Any, ack: int, resend_from: int | None) -> concurrent.futures.Future[Any]:
        if self.rng.random() < self.loss / 2:  # the request itself is lost
            lost: concurrent.futures.Future[Any] = concurrent.futures.Future()
            lost.set_exception(unavailable())
            return lost
        return self.lossy(self.host.poll(ack, resend_from))

    def deliver(self, handler_replies: list[int]) -> None:
        """A deliver from main whose handlers answer ``handler_replies``; its reply may be lost."""
        ack, resend_from = self.links.arguments("iso")
        link = self.host.link
        link.acknowledge(ack, resend_from)
        link.begin_collecting()
        for n in handler_replies:
            link.add(item(n))
        answer = link.end_collecting()
        work: concurrent.futures.Future[Any] = concurrent.futures.Future()
        work.set_result(answer)
        try:
            self.links.answered("iso", self.lossy(work).result())
        except Exception:
            self.links.failed("iso")


@pytest.mark.parametrize("seed", range(40))
def test_random_traffic_over_a_lossy_link_arrives_once_in_order(seed: int) -> None:
    rng = random.Random(seed)
    host = Host(reply_window=rng.choice([0.0, 0.001, 0.01]), ending_poll=0.005)
    driver = Driver(host, rng, loss=rng.choice([0.0, 0.1, 0.3]))
    driver.links.watch("iso", route=None)
    sent = 0
    for _ in range(rng.randint(1, 60)):
        if rng.random() < 0.3:
            replies = list(range(sent, sent + rng.randint(0, 3)))
            sent += len(replies)
            driver.deliver(replies)
        else:
            for _ in range(rng.randint(1, 5)):
                host.link.add(item(sent))
                sent += 1
        if rng.random() < 0.2:
            time.sleep(0.001)
    host.link.begin_ending()
    deadline = time.monotonic() + WAIT
    while not host.link.drained() and time.monotonic() < deadline:
        if rng.random() < 0.5:
            driver.deliver([])  # the driver may still talk to an ending isolate
        time.sleep(0.002)
    assert host.link.drained(), f"{host.link.unacknowledged()} batches never acknowledged"
    host.link.end()
    assert driver.ended.wait(WAIT)
    assert driver.got == list(range(sent))
    assert driver.links.watched() == 0


def now(callback: Any) -> None:
    callback()


def test_a_dead_isolate_stops_being_polled() -> None:
    ended = threading.Event()
    calls: list[concurrent.futures.Future[Any]] = []

    def poll(route: Any, ack: int, resend_from: int | None) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        calls.append(future)
        return future

    links = DriverLinks(
        lambda i: -1, lambda *a: None, poll, lambda i: ended.set(), on_done=inline, start=now
    )
    links.watch("iso", None)
    links.watch("iso", None)  # already watched: no second poll
    assert len(calls) == 1
    calls[0].set_exception(died())
    assert ended.is_set() and links.watched() == 0


def test_an_unavailable_isolate_is_polled_again_asking_to_resend() -> None:
    arguments: list[tuple[int, int | None]] = []
    calls: list[concurrent.futures.Future[Any]] = []

    def poll(route: Any, ack: int, resend_from: int | None) -> concurrent.futures.Future[Any]:
        arguments.append((ack, resend_from))
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        calls.append(future)
        return future

    links = DriverLinks(
        lambda i: 4, lambda *a: None, poll, lambda i: None, lambda d, cb: cb(), inline, now
    )
    links.watch("iso", None)
    calls[0].set_exception(unavailable())
    calls[1].set_result(LinkAnswer())
    assert arguments == [(4, None), (4, 5), (4, None)]
