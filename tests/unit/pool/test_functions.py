"""Functions sent once: the caller's pickles by identity and content, and a member's table
mirrored by the pool, checked without Ray over random sequences of tasks."""

from __future__ import annotations

import gc
import os
import random
from collections.abc import Callable

import pytest

from rayisolates._pool.functions import LARGEST, Known, Loaded, Pickled, encode_call

SEEDS = int(os.environ.get("POOL_FUNCTION_SEEDS", "300"))


def make(k: int) -> Callable[[], int]:
    return lambda: k


@pytest.mark.parametrize("chunk", range(4))
def test_a_members_table_and_the_pools_mirror_agree_in_any_order_of_tasks(chunk: int) -> None:
    """Random tasks over random functions to a few members (tables of random small
    sizes): every task finds its function, the right one, however many were forgotten."""
    for seed in range(chunk, SEEDS, 4):
        rng = random.Random(seed)
        capacity = rng.randint(1, 6)
        pickled = Pickled()
        functions = [make(k) for k in range(rng.randint(1, 15))]
        members = [(Known(capacity), Loaded(capacity)) for _ in range(rng.randint(1, 3))]
        in_flight: list[list[tuple[bytes, bytes | None, int]]] = [[] for _ in members]
        for _ in range(rng.randint(1, 200)):
            if rng.random() < 0.6:  # send a task to a member
                k = rng.randrange(len(functions))
                function = pickled.function(functions[k], "test")
                assert function is not None
                which = rng.randrange(len(members))
                data = members[which][0].sending(function)
                in_flight[which].append((function.key, data, k))
            else:  # a member takes the next task that reached it (in order)
                which = rng.randrange(len(members))
                if in_flight[which]:
                    key, data, k = in_flight[which].pop(0)
                    loaded = members[which][1]
                    if data is not None:
                        loaded.add(key, data)
                    assert loaded.get(key)() == k, f"seed {seed}"


def test_pickles_are_kept_by_identity_and_named_by_content() -> None:
    pickled = Pickled()
    first, same, other = make(1), make(1), make(2)
    a = pickled.function(first, "test")
    assert a is not None and pickled.function(first, "test") is a  # kept
    b = pickled.function(same, "test")
    assert b is not None and b is not a and b.key == a.key  # another object, same content
    c = pickled.function(other, "test")
    assert c is not None and c.key != a.key
    known = Known()  # a member is sent a function's bytes once, whichever copy is called
    assert known.sending(a) == a.data and known.sending(b) is None and known.sending(a) is None
    assert known.sending(c) == c.data


def test_a_rebound_cell_makes_a_new_pickle_and_a_collected_function_is_forgotten() -> None:
    pickled = Pickled()
    value = 1

    def read() -> int:
        return value

    before = pickled.function(read, "test")
    value = 2
    after = pickled.function(read, "test")
    assert before is not None and after is not None and before.key != after.key
    table = Loaded()
    table.add(after.key, after.data)
    assert table.get(after.key)() == 2
    count = len(pickled._by_id)
    del read
    gc.collect()
    assert len(pickled._by_id) == count - 1


def test_large_functions_and_unsendable_parts_are_told_apart() -> None:
    big = b"x" * (LARGEST + 1)
    assert Pickled().function(lambda: len(big), "test") is None
    function, _ = encode_call("test()", lambda: len(big), (), {})
    assert function is None
    import threading

    lock = threading.Lock()
    with pytest.raises(TypeError, match=r"test\(\) cannot send the function"):
        encode_call("test()", lambda: lock, (), {})
    with pytest.raises(TypeError, match=r"cannot send keyword argument 'x'"):
        encode_call("test()", make(1), (), {"x": lock})
    with pytest.raises(TypeError, match=r"cannot send item 1"):
        encode_call("test()", make(1), ((1,), (lock,)), None)


def test_a_function_a_member_never_got_is_a_clear_error() -> None:
    with pytest.raises(LookupError, match="does not hold"):
        Loaded().get(b"\0" * 16)
