"""What an isolate hands over outlives it, however late the receiver reads it.

Ray loses an object with its owner, the process that put it, and then fails
every read of its ref, even on a node that had already fetched the object.
So each case here hands over a random mix of small values and values large
enough for the object store, waits until the isolate that made them has
ended (its exit listener) and Ray knows it (a ref it owned fails), and only
then reads them: stream items from a
spawned producer and from a pool member, pool results, and port messages
followed by ``Isolate.exit`` or by the entry point returning.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
import ray

from rayisolates import Isolate, IsolatePool, IsolateStream, ReceivePort

from . import entries
from .support import run

pytestmark = pytest.mark.timeout(120)

SIZES = (8, 4_000, 150_000, 1_500_000)  # below and above the 100 KB object-store threshold
SEEDS = range(6)


def mix(rng: random.Random) -> list[int]:
    return [rng.choice(SIZES) for _ in range(rng.randint(1, 6))]


def check(values: list[Any], sizes: list[int]) -> None:
    assert len(values) == len(sizes)
    for i, (value, size) in enumerate(zip(values, sizes, strict=True)):
        assert value.shape == (max(1, size // 8),), i
        assert value[0] == value[-1] == i + 1 and int(value.sum()) == (i + 1) * value.size, i


def until_owner_gone(owned: ray.ObjectRef) -> None:
    """Wait until Ray fails reads of a ref whose owner has ended (it learns of the end a
    moment after the process goes)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ray.get(owned, timeout=10)
        except ray.exceptions.ObjectLostError:  # OwnerDiedError among them
            return
        except ray.exceptions.GetTimeoutError:
            continue  # asking a dead owner that Ray has not noticed yet
        time.sleep(0.05)
    raise AssertionError(f"reading {owned} still worked 60 s after its owner ended")


async def until_ended(isolate: Isolate) -> None:
    port: ReceivePort[Any] = ReceivePort("ended")
    isolate.add_on_exit_listener(port.send_port, "ended")  # at once if it has ended already
    assert await anext(port) == "ended"
    port.close()


def until_stream_ended(stream: IsolateStream[Any]) -> None:
    """Every item has arrived: the producer's last word came after them."""
    with stream._lock:
        assert stream._changed.wait_for(lambda: stream._end is not None, timeout=60)


@pytest.mark.parametrize("seed", SEEDS)
def test_stream_items_outlive_a_spawned_producer(ray_runtime: dict[str, Any], seed: int) -> None:
    rng = random.Random(seed)
    sizes = mix(rng)
    # Room for every item and for finding the end (asking the generator for one more
    # takes a credit too): the producer makes them all, says it is done and ends.
    stream = Isolate.stream(entries.self_then_arrays, sizes, buffer=len(sizes) + rng.randint(2, 5))
    producer, owned = next(stream)
    run(until_ended(producer))
    until_owner_gone(owned)
    check(list(stream), sizes)


@pytest.mark.parametrize("seed", SEEDS)
def test_stream_items_and_results_outlive_a_pool_member(
    ray_runtime: dict[str, Any], seed: int
) -> None:
    rng = random.Random(100 + seed)
    stream_sizes, result_sizes = mix(rng), mix(rng)
    with IsolatePool(1, debug_name=f"handover-{seed}") as pool:
        results = [
            pool.run(entries.sized_array, size, i + 1) for i, size in enumerate(result_sizes)
        ]
        # Room for the items and for finding the end, as above.
        stream = pool.stream(entries.self_then_arrays, stream_sizes, buffer=len(stream_sizes) + 2)
        member, owned = next(stream)
        until_stream_ended(stream)
    # The pool closed (its tasks finished first, their results not read): its member ended.
    run(until_ended(member))
    until_owner_gone(owned)
    check(list(stream), stream_sizes)
    check([result.result() for result in results], result_sizes)


@pytest.mark.parametrize("seed", SEEDS)
def test_port_messages_outlive_their_sender(ray_runtime: dict[str, Any], seed: int) -> None:
    rng = random.Random(200 + seed)
    sizes, how = mix(rng), rng.choice(["exit", "return"])

    async def scenario() -> None:
        port: ReceivePort[Any] = ReceivePort("handover")
        isolate = await Isolate.spawn(entries.arrays_then_end, (port.send_port, sizes, how))
        owned = await anext(port)
        await until_ended(isolate)
        until_owner_gone(owned)
        check([await anext(port) for _ in sizes], sizes)
        port.close()

    run(scenario())


@pytest.mark.parametrize("size", [8_000, 150_000, 1_500_000])
def test_a_spawn_message_outlives_a_spawner_that_exits_at_once(
    ray_runtime: dict[str, Any], size: int
) -> None:
    async def scenario() -> None:
        port: ReceivePort[Any] = ReceivePort("handover")
        spawner = await Isolate.spawn(entries.spawn_then_exit, (port.send_port, size))
        owned = await anext(port)
        await until_ended(spawner)
        until_owner_gone(owned)
        assert await anext(port) == ("child", 7 * (size // 8), size // 8)
        port.close()

    run(scenario())


@pytest.mark.parametrize("size", [8_000, 150_000, 1_500_000])
def test_an_exit_response_outlives_the_isolate_that_asked_for_it(
    ray_runtime: dict[str, Any], size: int
) -> None:
    async def scenario() -> None:
        port: ReceivePort[Any] = ReceivePort("handover")
        target = await Isolate.spawn(entries.echo, port.send_port)
        target_port = await anext(port)
        asker = await Isolate.spawn(entries.listen_then_exit, (port.send_port, target, size))
        owned = await anext(port)
        await until_ended(asker)
        until_owner_gone(owned)
        target_port.send(None)  # the target exits ("bye"), then its listeners are told
        assert await anext(port) == "bye"
        response = await anext(port)
        assert response.size == size // 8 and int(response.sum()) == 9 * response.size
        port.close()

    run(scenario())
