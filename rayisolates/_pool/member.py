"""What runs inside each pool member: a task port, tasks run in order, answers sent back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .._ports import ReceivePort
from .._run import _portable
from .._sendport import SendPort
from .._transport.codec import encode, open_encoded_async
from .._transport.wire import Encoded
from .functions import Loaded, call

__all__ = ["member"]


async def member(setup: tuple[SendPort[Any], int, int]) -> None:
    """A pool member's entry point: announce a task port; run what arrives on it in order,
    at most ``max_parallel`` at once (the rest wait here, sent ahead); answer each task
    ``(task_id, ok, encoded value or error, seconds it ran)`` on the pool's result port.

    A task is ``(task_id, key, data, work)``: ``key`` names a function this member
    holds (``data``, its pickled bytes, come with the first task calling it) and
    ``work`` encodes ``(args, kwargs)`` (``kwargs`` ``None``: a chunk, ``args`` a list of
    argument tuples); without a key ``work`` encodes ``(fn, args)``.
    """
    results, member_id, max_parallel = setup
    tasks: ReceivePort[Any] = ReceivePort("pool-member")
    results.send(("ready", member_id, tasks.send_port))
    slots = asyncio.Semaphore(max_parallel)
    running: set[asyncio.Task[None]] = set()
    functions = Loaded()
    async for task in tasks:
        if task is None:  # told to end: finish what runs and waits, then go
            break
        task_id, key, data, work = task
        if data is not None:  # in arrival order: the pool mirrors this table
            functions.add(key, data)
        job = asyncio.ensure_future(_perform(results, slots, functions, task_id, key, work))
        running.add(job)
        job.add_done_callback(running.discard)
    tasks.close()
    if running:
        await asyncio.gather(*running)


async def _perform(
    results: SendPort[Any],
    slots: asyncio.Semaphore,
    functions: Loaded,
    task_id: int,
    key: bytes | None,
    work: Encoded,
) -> None:
    """Run one task and answer it.

    The task is opened here, not by the port: a function this process cannot
    load (its module is missing here, say) fails its task, not the member.
    """
    async with slots:  # tasks start in the order they arrived
        started = time.perf_counter()
        try:
            if key is None:
                fn, args = await open_encoded_async(work)
                kwargs: dict[str, Any] | None = {}
            else:
                fn = functions.get(key)
                args, kwargs = await open_encoded_async(work)
            value = await call(fn, args, kwargs)
            ok, answer = True, encode(value, "returning a pool task's result")
        except Exception as error:
            ok, answer = False, encode(_portable(error), "raising from a pool task")
        results.send((task_id, ok, answer, time.perf_counter() - started))
