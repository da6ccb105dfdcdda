"""How a finished Ray call is read, and calls repeated until they are delivered."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest
from ray import exceptions as ray_errors

from rayisolates._transport import rpc as _rpc
from rayisolates._transport.rpc import DEAD, DELIVERED, RAISED, RETRY, backoff, call, outcome

from ..fakes import died, unavailable


def test_outcomes() -> None:
    assert outcome(None) == DELIVERED
    assert outcome(unavailable()) == RETRY
    assert outcome(died()) == DEAD
    assert outcome(ray_errors.RayActorError()) == DEAD
    assert outcome(ValueError("raised by the method")) == RAISED


def test_backoff_starts_at_once_and_is_capped() -> None:
    delays = [backoff(attempt) for attempt in range(1, 20)]
    assert delays[0] == 0.0
    assert delays == sorted(delays)
    assert delays[-1] == 1.0


def test_call_repeats_while_unavailable_and_returns_the_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_rpc, "later", lambda delay, callback: callback())
    attempts: list[concurrent.futures.Future[Any]] = []

    def make() -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        attempts.append(future)
        if len(attempts) < 3:
            future.set_exception(unavailable())
        else:
            future.set_result("answer")
        return future

    assert call(make).result(1) == "answer"
    assert len(attempts) == 3


def test_call_gives_up_on_a_dead_actor() -> None:
    def make() -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_exception(died())
        return future

    with pytest.raises(ray_errors.ActorDiedError):
        call(make).result(1)


def test_later_runs_callbacks_after_their_delay_in_order() -> None:
    done: list[int] = []
    finished = concurrent.futures.Future[None]()

    def second() -> None:
        done.append(2)
        finished.set_result(None)

    _rpc.later(0.05, second)
    _rpc.later(0.01, lambda: done.append(1))
    finished.result(2)
    assert done == [1, 2]
