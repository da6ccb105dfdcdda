"""Benchmarks between two isolates: what the same-node direct channels are for."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray

from rayisolates import Isolate, ReceivePort, SendPort

from . import entries
from .figure import OURS, Figure, actor, pipe_round_trips

__all__ = ["ping_pong_between_isolates", "throughput_between_isolates"]

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
    count = 4_000 if quick else 40_000
    raw_count = 400 if quick else 4_000
    port: ReceivePort[Any] = ReceivePort("bench-between-throughput")
    sink = Isolate.spawn(entries.counting_sink, port.send_port).result()
    sink_port: SendPort[Any] = loop.run_until_complete(anext(port))
    burst = Isolate.spawn(entries.burst_to, port.send_port).result()
    burst_port: SendPort[Any] = loop.run_until_complete(anext(port))
    raw_sink = actor(entries.RawSink).remote()
    raw_producer = actor(entries.RawProducer).remote()
    context = multiprocessing.get_context("spawn")
    command, data = context.Queue(), context.Queue()
    producer = context.Process(target=entries.mp_producer, args=(command, data), daemon=True)
    producer.start()

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

    def mp_queue() -> float:
        started = time.perf_counter()
        command.put(count)
        for _ in range(count):
            data.get()
        return count / (time.perf_counter() - started)

    raw_calls()
    mp_queue()
    try:
        yield Figure(
            "throughput isolate -> isolate",
            "msgs/s",
            higher_is_better=True,
            contenders={
                OURS: ours,
                "raw per-message sync actor calls": raw_calls,
                "multiprocessing.Queue": mp_queue,
            },
            rounds=3 if quick else 10,
        )
    finally:
        command.put(None)
        producer.join(5)
        sink.kill()
        burst.kill()
        port.close()
        ray.kill(raw_sink)
        ray.kill(raw_producer)
