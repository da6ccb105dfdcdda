"""Benchmarks across nodes (``rayisolates bench --across-nodes``): what crosses the network.

Each case pins its isolates and its raw Ray comparators to the same nodes
(``node_a``, ``node_b``, the driver's; see ``cluster``), so both sides pay
the same hops. The raw comparators are the fastest a user would write: sync
actor methods, pipelined calls, a Ray streaming generator task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray

from rayisolates import Isolate, IsolatePool, ReceivePort

from . import entries
from .between import isolate_throughput
from .cluster import NODE_A, NODE_B, on, on_driver_node
from .figure import OURS, Figure, actor
from .ports import reply_ping_pong
from .workers import round_trip

__all__ = [
    "ping_pong_across_nodes",
    "ping_pong_isolates_across_nodes",
    "stream_across_nodes_buffer_16",
    "stream_across_nodes_buffer_1024",
    "throughput_across_nodes",
    "throughput_isolates_across_nodes",
    "worker_round_trip_across_nodes",
]

BATCH = 20  # round trips per reading


@contextmanager
def ping_pong_across_nodes(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """Request/reply between the main isolate and an isolate on node a, against a sync
    method call of a raw actor there."""
    yield from reply_ping_pong(
        loop,
        quick,
        "ping-pong main <-> isolate across nodes, reply port in each message",
        on(NODE_A),
        on(NODE_A),
    )


@contextmanager
def worker_round_trip_across_nodes(
    loop: asyncio.AbstractEventLoop, quick: bool
) -> Iterator[Figure]:
    """A no-op method of a worker on node a called from the driver, one call at a time,
    against ``ray.get`` of a raw sync actor's method there."""
    yield from round_trip(quick, "IsolateWorker no-op call round trip across nodes", on(NODE_A))


@contextmanager
def ping_pong_isolates_across_nodes(
    loop: asyncio.AbstractEventLoop, quick: bool
) -> Iterator[Figure]:
    """Request/reply from an isolate on node a to one on node b, against a raw actor on
    a calling a sync actor on b (``ray.get`` inside)."""
    port: ReceivePort[Any] = ReceivePort("bench-across-ping-pong")
    pinger = Isolate.spawn(entries.reply_pinger, port.send_port, **on(NODE_A)).result()
    commands, echoes = loop.run_until_complete(anext(port))
    partner = Isolate.spawn(entries.reply_echo, echoes, **on(NODE_B)).result()
    raw_pinger = actor(entries.RawPinger).options(**on(NODE_A)).remote()
    raw_echo = actor(entries.RawEcho).options(**on(NODE_B)).remote()
    ray.get(raw_pinger.ping.remote(raw_echo, 2))

    def ours() -> float:
        commands.send(BATCH)
        result: float = loop.run_until_complete(anext(port))
        return result

    def raw() -> float:
        return float(ray.get(raw_pinger.ping.remote(raw_echo, BATCH)))

    ours()
    try:
        yield Figure(
            "ping-pong isolate <-> isolate across nodes, reply port in each message",
            "ms",
            higher_is_better=False,
            contenders={OURS: ours, "raw sync actor -> actor call": raw},
            rounds=10 if quick else 60,
        )
    finally:
        pinger.kill()
        partner.kill()
        port.close()
        ray.kill(raw_pinger)
        ray.kill(raw_echo)


def _counts(quick: bool) -> tuple[int, int]:
    """Messages per reading: ours, and the raw calls' (ten times slower, as many seconds)."""
    return (2_000, 200) if quick else (20_000, 2_000)


@contextmanager
def throughput_across_nodes(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """Small messages from an isolate on node b to a main-isolate port, against a raw
    actor on b making one sync call per message (pipelined) to an actor on the
    driver's node."""
    count, raw_count = _counts(quick)
    port: ReceivePort[Any] = ReceivePort("bench-across-throughput")
    isolate = Isolate.spawn(entries.sender, port.send_port, **on(NODE_B)).result()
    worker, _ = loop.run_until_complete(anext(port))
    sink = actor(entries.RawSink).options(**on_driver_node()).remote()
    producer = actor(entries.RawProducer).options(**on(NODE_B)).remote()

    async def receive(total: int) -> None:
        for _ in range(total):
            await anext(port)

    def ours() -> float:
        started = time.perf_counter()
        worker.send((port.send_port, count))
        loop.run_until_complete(receive(count))
        return count / (time.perf_counter() - started)

    def raw_calls() -> float:
        started = time.perf_counter()
        ray.get(producer.to_sink.remote(sink, raw_count))
        return raw_count / (time.perf_counter() - started)

    ours()
    raw_calls()
    try:
        yield Figure(
            "port throughput, isolate -> main across nodes",
            "msgs/s",
            higher_is_better=True,
            contenders={OURS: ours, "raw per-message sync actor calls": raw_calls},
            rounds=3 if quick else 10,
        )
    finally:
        isolate.kill()
        port.close()
        ray.kill(sink)
        ray.kill(producer)


@contextmanager
def throughput_isolates_across_nodes(
    loop: asyncio.AbstractEventLoop, quick: bool
) -> Iterator[Figure]:
    """Small messages from an isolate on node a to one on node b, against a raw actor on
    a making one sync call per message (pipelined) to an actor on b."""
    name = "throughput isolate -> isolate across nodes"
    with isolate_throughput(loop, quick, name, on(NODE_A), on(NODE_B)) as figure:
        yield figure


def _stream_across_nodes(quick: bool, buffer: int) -> Iterator[Figure]:
    """Small items from a pool member's stream on node b, taken one by one by the driver,
    against a Ray streaming generator task on b; with a buffer of 16, also against one
    held to 16 items ahead (Ray's private backpressure option)."""
    count = 2_000 if quick else 20_000
    ray_count = 200 if quick else 2_000
    # Like the pool's members, the raw task reserves no CPU: it runs whatever holds b's CPUs.
    placed = {"num_returns": "streaming", "max_retries": 0, "num_cpus": 0, **on(NODE_B)}
    ray_streams = {"Ray streaming generator task": ray.remote(**placed)(entries.ray_numbers)}
    if buffer == 16:
        ray_streams["Ray streaming generator task, backpressure 16"] = ray.remote(
            **placed, _generator_backpressure_num_objects=16
        )(entries.ray_numbers)
    pool = IsolatePool(1, debug_name="bench-across-stream", **on(NODE_B))

    def ours() -> float:
        started = time.perf_counter()
        taken = sum(1 for _ in pool.stream(entries.numbers, count, buffer=buffer))
        assert taken == count
        return count / (time.perf_counter() - started)

    def ray_generator(task: Any) -> float:
        started = time.perf_counter()
        taken = sum(1 for ref in task.remote(ray_count) if ray.get(ref) is not None)
        assert taken == ray_count
        return ray_count / (time.perf_counter() - started)

    contenders = {OURS: ours} | {
        name: (lambda task=task: ray_generator(task)) for name, task in ray_streams.items()
    }
    for sample in contenders.values():
        sample()
    try:
        yield Figure(
            f"IsolatePool.stream small items across nodes, one by one, buffer {buffer}",
            "items/s",
            higher_is_better=True,
            contenders=contenders,
            rounds=3 if quick else 7,
        )
    finally:
        pool.close()


@contextmanager
def stream_across_nodes_buffer_16(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """A pool member's stream on node b, buffer 16 (the default), to the driver."""
    yield from _stream_across_nodes(quick, buffer=16)


@contextmanager
def stream_across_nodes_buffer_1024(
    loop: asyncio.AbstractEventLoop, quick: bool
) -> Iterator[Figure]:
    """The same with a buffer of 1024."""
    yield from _stream_across_nodes(quick, buffer=1024)
