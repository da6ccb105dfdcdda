"""Encoding below the object-store threshold, naming unsendable parts, translating Ray errors."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
from ray import exceptions as ray_errors

from rayisolates import IsolateSpawnException, RemoteError
from rayisolates._errors import ENDED_WITHOUT_RESULT, from_ray, start_failure
from rayisolates._transport.codec import (
    INLINE,
    LARGE_BYTES,
    PICKLED,
    decode_now,
    encode,
    needs_fetch,
)
from rayisolates._transport.sendable import unsendable_part


@pytest.mark.parametrize("value", [None, True, 3, 2.5, 1j, "short", b"short"])
def test_scalars_and_short_strings_travel_as_they_are(value: object) -> None:
    assert encode(value) == (INLINE, value, None)


def test_strings_just_below_the_threshold_stay_inline() -> None:
    kind, _, _ = encode("x" * (LARGE_BYTES - 1))
    assert kind == INLINE


def test_containers_and_small_arrays_are_pickled_in_band() -> None:
    for value in ([1, {"a": (2, 3)}], np.arange(10)):
        kind, payload, refs = encode(value)
        assert kind == PICKLED and isinstance(payload, bytes) and refs is None
        ((_, back),) = decode_now([(1, kind, payload, refs)])
        assert pickle.dumps(back) == pickle.dumps(value)
        assert not needs_fetch([(1, kind, payload, refs)])


@pytest.mark.parametrize(
    "value",
    [
        b"x" * LARGE_BYTES,
        "y" * LARGE_BYTES,
        np.arange(LARGE_BYTES // 4),
        {"array": np.ones(LARGE_BYTES), "tag": 1},
    ],
)
def test_large_values_kept_out_of_the_object_store_are_pickled_whole(value: object) -> None:
    """What others hold and send after this process may have ended (exit listeners' and
    pings' responses) must not live in objects this process owns."""
    kind, payload, refs = encode(value, store=False)
    assert kind == PICKLED and len(payload) >= LARGE_BYTES and refs is None
    ((_, back),) = decode_now([(1, kind, payload, refs)])
    assert pickle.dumps(back) == pickle.dumps(value)


def test_a_copy_is_taken_at_send() -> None:
    value = [1, 2]
    kind, payload, refs = encode(value)
    value.append(3)
    ((_, back),) = decode_now([(1, kind, payload, refs)])
    assert back == [1, 2]


def test_lambdas_need_cloudpickle_and_still_travel() -> None:
    kind, payload, refs = encode(lambda x: x + 1)
    ((_, back),) = decode_now([(1, kind, payload, refs)])
    assert back(1) == 2


@pytest.mark.parametrize(
    ("message", "named"),
    [
        ({"guard": threading.Lock()}, "message['guard']"),
        ([1, [2, threading.Lock()]], "message[1][1]"),
        ((x for x in range(3)), "message ("),
    ],
)
def test_an_unsendable_part_is_named(message: object, named: str) -> None:
    with pytest.raises(TypeError, match="nothing was sent") as refused:
        encode(message)
    assert named in str(refused.value)


def test_an_open_file_is_refused_with_advice() -> None:
    with open(__file__) as file, pytest.raises(TypeError, match="send its name or its contents"):
        encode({"file": file})


def test_unsendable_part_of_a_sendable_value_is_none() -> None:
    assert unsendable_part([1, 2], "value") is None


def test_unsendable_part_goes_into_attributes() -> None:
    class Holder:
        def __init__(self) -> None:
            self.lock = threading.Lock()

    described = unsendable_part({"h": Holder()}, "argument 0")
    assert described is not None and described.startswith("argument 0['h'].lock (")


class Custom(Exception):
    pass


def test_from_ray_gives_the_users_own_exception() -> None:
    cause = Custom("boom")
    error = ray_errors.RayTaskError("f", "Traceback...", cause)
    assert from_ray(error, cancelled=RuntimeError) is cause


def test_from_ray_turns_a_dead_actor_into_remote_error() -> None:
    translated = from_ray(ray_errors.ActorDiedError(), cancelled=RuntimeError)
    assert isinstance(translated, RemoteError)
    assert str(translated).startswith(ENDED_WITHOUT_RESULT)


def test_from_ray_turns_timeouts_and_cancellation_into_their_python_kinds() -> None:
    assert isinstance(from_ray(ray_errors.GetTimeoutError(), cancelled=KeyError), TimeoutError)
    assert isinstance(from_ray(ray_errors.TaskCancelledError(), cancelled=KeyError), KeyError)


def test_from_ray_leaves_other_errors_alone() -> None:
    error = ValueError("not Ray's")
    assert from_ray(error, cancelled=KeyError) is error


def test_a_failed_start_is_a_spawn_exception_naming_the_isolate() -> None:
    """Both ways to start a host (the supervisor's, a lease's) fail alike: the host's own
    IsolateSpawnException passes as it is, anything else is wrapped with it as cause."""
    own = IsolateSpawnException("could not load tests.nothing")
    loading = ray_errors.RayTaskError("start", "Traceback...", own)
    assert start_failure(loading, "a", cancelled=KeyError) is own
    for error, cause_type in [
        (ray_errors.ActorDiedError(), RemoteError),
        (ray_errors.RayTaskError("start", "Traceback...", Custom("boom")), Custom),
        (ray_errors.TaskCancelledError(), KeyError),
    ]:
        failure = start_failure(error, "named", cancelled=KeyError)
        assert isinstance(failure, IsolateSpawnException)
        assert str(failure).startswith("isolate 'named' could not start: ")
        assert isinstance(failure.__cause__, cause_type)
        assert failure.__suppress_context__
