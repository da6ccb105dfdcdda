"""What runs inside each pool member: a task port, tasks run in order, answers sent back."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

from .._ports import ReceivePort
from .._run import _portable
from .._sendport import SendPort
from .._transport.codec import encode, open_encoded_async
from .._transport.wire import Encoded

__all__ = ["member"]


async def member(setup: tuple[SendPort[Any], int, int]) -> None:
    """A pool member's entry point: announce a task port; run what arrives on it in order,
    at most ``max_parallel`` at once (the rest wait here, sent ahead); answer each task
    ``(task_id, ok, encoded value or error, seconds it ran)`` on the pool's result port."""
    results, member_id, max_parallel = setup
    tasks: ReceivePort[Any] = ReceivePort("pool-member")
    results.send(("ready", member_id, tasks.send_port))
    slots = asyncio.Semaphore(max_parallel)
    running: set[asyncio.Task[None]] = set()
    async for task in tasks:
        if task is None:  # told to end: finish what runs and waits, then go
            break
        job = asyncio.ensure_future(_perform(results, slots, *task))
        running.add(job)
        job.add_done_callback(running.discard)
    tasks.close()
    if running:
        await asyncio.gather(*running)


async def _perform(
    results: SendPort[Any], slots: asyncio.Semaphore, task_id: int, work: Encoded
) -> None:
    """Run one task and answer it.

    The task is opened here, not by the port: a function this process cannot
    load (its module is missing here, say) fails its task, not the member.
    """
    async with slots:  # tasks start in the order they arrived
        started = time.perf_counter()
        try:
            fn, args = await open_encoded_async(work)
            value = fn(*args)
            if inspect.isawaitable(value):
                value = await value
            ok, answer = True, encode(value, "returning a pool task's result")
        except Exception as error:
            ok, answer = False, encode(_portable(error), "raising from a pool task")
        results.send((task_id, ok, answer, time.perf_counter() - started))
