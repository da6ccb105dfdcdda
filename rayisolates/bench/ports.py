"""Benchmarks of ports: ping-pong, small-message throughput, crash notice."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import ray
from ray.util.queue import Queue

from rayisolates import Isolate, ReceivePort, SendPort

from . import entries
from .figure import (
    OURS,
    Figure,
    actor,
    median_round_trip_ms,
    median_round_trip_ms_async,
    pipe_round_trips,
)

__all__ = [
    "crash_notice",
    "ping_pong",
    "ping_pong_reply_port",
    "reply_ping_pong",
    "throughput_four_senders",
    "throughput_one_sender",
]


@contextmanager
def ping_pong(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """A message to an isolate and its reply, against one raw actor method call."""
    port: ReceivePort[Any] = ReceivePort("bench-ping-pong")
    isolate = Isolate.spawn(entries.echo, port.send_port).result()
    worker: SendPort[Any] = loop.run_until_complete(anext(port))
    raw = actor(entries.RawEcho).remote()
    raw_async = actor(entries.RawAsyncEcho).remote()
    ray.get([raw.echo.remote(0), raw_async.echo.remote(0)])
    batch = 20
    pipe, stop_pipe = pipe_round_trips(batch)

    async def round_trip(i: int) -> object:
        worker.send(i)
        return await anext(port)

    def ours() -> float:
        return loop.run_until_complete(median_round_trip_ms_async(round_trip, batch))

    def raw_calls(target: Any) -> float:
        return median_round_trip_ms(lambda i: ray.get(target.echo.remote(i)), batch)

    try:
        yield Figure(
            "ping-pong main <-> isolate",
            "ms",
            higher_is_better=False,
            contenders={
                OURS: ours,
                "raw sync actor method call": lambda: raw_calls(raw),
                "raw async actor method call": lambda: raw_calls(raw_async),
                "multiprocessing.Pipe round trip": pipe,
            },
            rounds=10 if quick else 60,
        )
    finally:
        stop_pipe()
        isolate.kill()
        port.close()
        ray.kill(raw)
        ray.kill(raw_async)


def reply_ping_pong(
    loop: asyncio.AbstractEventLoop,
    quick: bool,
    name: str,
    isolate_options: dict[str, Any],
    actor_options: dict[str, Any],
) -> Iterator[Figure]:
    """Dart's request/reply idiom, ``(i, reply_port)`` to an isolate answering on the
    port it received, against one sync method call of a raw actor; each placed by its
    Ray options."""
    replies: ReceivePort[Any] = ReceivePort("bench-reply-ping-pong")
    isolate = Isolate.spawn(entries.reply_echo, replies.send_port, **isolate_options).result()
    worker: SendPort[Any] = loop.run_until_complete(anext(replies))
    raw = actor(entries.RawEcho).options(**actor_options).remote()
    ray.get(raw.echo.remote(0))
    batch = 20

    async def round_trip(i: int) -> object:
        worker.send((i, replies.send_port))
        return await anext(replies)

    def ours() -> float:
        return loop.run_until_complete(median_round_trip_ms_async(round_trip, batch))

    def raw_call() -> float:
        return median_round_trip_ms(lambda i: ray.get(raw.echo.remote(i)), batch)

    ours()
    try:
        yield Figure(
            name,
            "ms",
            higher_is_better=False,
            contenders={OURS: ours, "raw sync actor method call": raw_call},
            rounds=10 if quick else 60,
        )
    finally:
        isolate.kill()
        replies.close()
        ray.kill(raw)


@contextmanager
def ping_pong_reply_port(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """A message carrying its reply port to an isolate, and the answer on that port."""
    yield from reply_ping_pong(
        loop, quick, "ping-pong main <-> isolate, reply port in each message", {}, {}
    )


def _port_throughput(
    loop: asyncio.AbstractEventLoop, quick: bool, senders: int
) -> Iterator[Figure]:
    count = 4_000 if quick else 40_000
    raw_count = 400 if quick else 4_000
    queue_count = 100 if quick else 800
    port: ReceivePort[Any] = ReceivePort("bench-throughput")
    isolates = [Isolate.spawn(entries.sender, port.send_port).result() for _ in range(senders)]
    workers = [loop.run_until_complete(anext(port))[0] for _ in range(senders)]
    sink = actor(entries.RawSink).remote()
    producers = [actor(entries.RawProducer).remote() for _ in range(senders)]
    queue = Queue()
    context = multiprocessing.get_context("spawn")
    commands = [context.Queue() for _ in range(senders)]
    data = context.Queue()
    processes = [
        context.Process(target=entries.mp_producer, args=(command, data), daemon=True)
        for command in commands
    ]
    for process in processes:
        process.start()

    async def receive(total: int) -> None:
        for _ in range(total):
            await anext(port)

    def ours() -> float:
        started = time.perf_counter()
        for worker in workers:
            worker.send((port.send_port, count // senders))
        loop.run_until_complete(receive(count // senders * senders))
        return count / (time.perf_counter() - started)

    def raw_calls() -> float:
        started = time.perf_counter()
        ray.get([p.to_sink.remote(sink, raw_count // senders) for p in producers])
        return raw_count / (time.perf_counter() - started)

    def ray_queue() -> float:
        started = time.perf_counter()
        pending = [p.to_queue.remote(queue, queue_count // senders) for p in producers]
        for _ in range(queue_count // senders * senders):
            queue.get()
        ray.get(pending)
        return queue_count / (time.perf_counter() - started)

    def mp_queue() -> float:
        started = time.perf_counter()
        for command in commands:
            command.put(count // senders)
        for _ in range(count // senders * senders):
            data.get()
        return count / (time.perf_counter() - started)

    ray.get(sink.received.remote())
    raw_calls()
    mp_queue()
    try:
        yield Figure(
            f"port throughput, {senders} isolate(s) -> main",
            "msgs/s",
            higher_is_better=True,
            contenders={
                OURS: ours,
                "raw per-message sync actor calls": raw_calls,
                "ray.util.queue.Queue": ray_queue,
                "multiprocessing.Queue": mp_queue,
            },
            rounds=3 if quick else 10,
        )
    finally:
        for command in commands:
            command.put(None)
        for process in processes:
            process.join(5)
        for isolate in isolates:
            isolate.kill()
        port.close()
        for raw_actor in [sink, *producers]:
            ray.kill(raw_actor)
        queue.shutdown()


@contextmanager
def throughput_one_sender(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """Small messages from one isolate to a main-isolate port."""
    yield from _port_throughput(loop, quick, senders=1)


@contextmanager
def throughput_four_senders(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """Small messages from four isolates to one main-isolate port."""
    yield from _port_throughput(loop, quick, senders=4)


@contextmanager
def crash_notice(loop: asyncio.AbstractEventLoop, quick: bool) -> Iterator[Figure]:
    """From SIGKILL of an isolate's process to its exit listener firing.

    The comparator is what raw Ray offers: a call kept pending on the actor,
    failing with ``ActorDiedError``.
    """
    port: ReceivePort[Any] = ReceivePort("bench-crash")

    def ours() -> float:
        isolate = Isolate.spawn(entries.sender, port.send_port, on_exit=port.send_port).result()
        _, pid = loop.run_until_complete(anext(port))
        probe: ReceivePort[Any] = ReceivePort()
        isolate.ping(probe.send_port)  # the exit listener is in place once this answers
        loop.run_until_complete(anext(probe))
        probe.close()
        started = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        loop.run_until_complete(anext(port))
        return (time.perf_counter() - started) * 1000

    def raw() -> float:
        waiter = actor(entries.RawWaiter).remote()
        pid = ray.get(waiter.pid.remote())
        pending = waiter.wait_forever.remote()
        started = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        with suppress(ray.exceptions.RayActorError):
            ray.get(pending)
        return (time.perf_counter() - started) * 1000

    try:
        yield Figure(
            "hard crash -> exit notice",
            "ms",
            higher_is_better=False,
            contenders={OURS: ours, "raw pending call fails": raw},
            rounds=2 if quick else 8,
        )
    finally:
        port.close()
