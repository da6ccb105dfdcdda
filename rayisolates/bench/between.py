"""Benchmarks between two isolates: what the same-node direct channels are for."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import ray

from rayisolates import Isolate, ReceivePort, SendPort

from . import entries
from .figure import OURS, Figure, actor, pipe_round_trips

__all__ = [
    "isolate_throughput",
    "ping_pong_between_isolates",
    "queue_throughput",
    "throughput_between_isolates",
]

BATCH = 20  # round trips per reading


@contextmanager
def ping_pong_between_isolates(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """A message from one isolate to another and its reply, against a raw actor-to-actor call."""
    port: ReceivePort[Any] = ReceivePort("bench-between")
    pinger = Isolate.spawn(entries.pinger, port.send_port).result()
    commands, echoes = loop.run_until_complete(anext(port))
    partner = Isolate.spawn(entries.echo, echoes).result()
    raw_pinger = actor(entries.RawPinger).remote()
    raw_echo = actor(entries.RawEcho).remote()
    ray.get(raw_pinger.ping.remote(raw_echo, 2))
    pipe, stop_pipe = pipe_round_trips(BATCH)

    def ours() -> float:
        commands.send(BATCH)
        result: float = loop.run_until_complete(anext(port))
        return result

    try:
        yield Figure(
            "ping-pong isolate <-> isolate",
            "ms",
            higher_is_better=False,
            contenders={
                OURS: ours,
                "raw sync actor -> actor call": lambda: float(
                    ray.get(raw_pinger.ping.remote(raw_echo, BATCH))
                ),
                "multiprocessing.Pipe round trip": pipe,
            },
            rounds=10 if quick else 60,
        )
    finally:
        stop_pipe()
        pinger.kill()
        partner.kill()
        port.close()
        ray.kill(raw_pinger)
        ray.kill(raw_echo)


@contextmanager
def throughput_between_isolates(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """Small messages from one isolate to another, against raw calls and multiprocessing."""
    with isolate_throughput(loop, quick, "throughput isolate -> isolate") as figure:
        yield figure


@contextmanager
def isolate_throughput(
    loop: asyncio.AbstractEventLoop,
    quick: bool,
    name: str,
    source: dict[str, Any] | None = None,
    sink: dict[str, Any] | None = None,
) -> Iterator[Figure]:
    """Small messages from an isolate placed by ``source`` (Ray options) to one placed by
    ``sink``, against a raw actor making one sync call per message (pipelined) to another,
    placed alike; on one node (no placement) against a ``multiprocessing.Queue`` too."""
    count = 4_000 if quick else 40_000
    raw_count = 400 if quick else 4_000
    source, sink = source or {}, sink or {}
    port: ReceivePort[Any] = ReceivePort("bench-between-throughput")
    counting = Isolate.spawn(entries.counting_sink, port.send_port, **sink).result()
    sink_port: SendPort[Any] = loop.run_until_complete(anext(port))
    burst = Isolate.spawn(entries.burst_to, port.send_port, **source).result()
    burst_port: SendPort[Any] = loop.run_until_complete(anext(port))
    raw_sink = actor(entries.RawSink).options(**sink).remote()
    raw_producer = actor(entries.RawProducer).options(**source).remote()
    stop_queue: Callable[[], None] = _nothing

    def ours() -> float:
        started = time.perf_counter()
        burst_port.send((sink_port, count))
        arrived = loop.run_until_complete(anext(port))
        assert arrived == count, f"{arrived} of {count} arrived"
        return count / (time.perf_counter() - started)

    def raw_calls() -> float:
        started = time.perf_counter()
        ray.get(raw_producer.to_sink.remote(raw_sink, raw_count))
        return raw_count / (time.perf_counter() - started)

    contenders: dict[str, Callable[[], float]] = {
        OURS: ours,
        "raw per-message sync actor calls": raw_calls,
    }
    if not source and not sink:
        contenders["multiprocessing.Queue"], stop_queue = queue_throughput(count)
    for sample in contenders.values():
        sample()
    try:
        yield Figure(
            name, "msgs/s", higher_is_better=True, contenders=contenders, rounds=3 if quick else 10
        )
    finally:
        stop_queue()
        counting.kill()
        burst.kill()
        port.close()
        ray.kill(raw_sink)
        ray.kill(raw_producer)


def queue_throughput(count: int) -> tuple[Callable[[], float], Callable[[], None]]:
    """A child process putting ``count`` small items on a ``multiprocessing.Queue``: a reading
    (items/s) and a function that stops the child."""
    context = multiprocessing.get_context("spawn")
    command, data = context.Queue(), context.Queue()
    producer = context.Process(target=entries.mp_producer, args=(command, data), daemon=True)
    producer.start()

    def reading() -> float:
        started = time.perf_counter()
        command.put(count)
        for _ in range(count):
            data.get()
        return count / (time.perf_counter() - started)

    def stop() -> None:
        command.put(None)
        producer.join(5)

    return reading, stop


def _nothing() -> None:
    pass
