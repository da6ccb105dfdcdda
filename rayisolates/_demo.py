"""``rayisolates demo``: a short tour of isolates on a real Ray runtime."""

from __future__ import annotations

import asyncio
import os
import time

from ._errors import RemoteError
from ._isolate import Isolate
from ._run import compute
from ._runtime import init, shutdown

__all__ = ["demo"]


def _fibonacci(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


async def _fetch_later(value: str) -> str:
    await asyncio.sleep(0.01)
    return value.upper()


def _fail(reason: str) -> None:
    raise ValueError(reason)


def _crash() -> None:
    os._exit(1)


def demo(address: str | None = None) -> int:
    """Run the tour; returns 0 when every step behaved as described."""
    started = time.perf_counter()
    print("Starting Ray" + (f" at {address}" if address else " (local)") + " ...", flush=True)
    init(address=address)
    try:
        print(f"Ray ready in {time.perf_counter() - started:.1f} s")
        print("Isolate.run(fibonacci, 90) ->", Isolate.run(_fibonacci, 90).result())
        offset = 1000
        print("closure                 ->", Isolate.run(lambda x: x + offset, 1).result())
        print("async def               ->", Isolate.run(_fetch_later, "from an isolate").result())
        print("compute(len, 'isolate') ->", compute(len, "isolate").result())
        try:
            Isolate.run(_fail, "raised in the isolate").result()
        except ValueError as error:
            print(f"errors keep their type  -> ValueError({error})")
        try:
            Isolate.run(_crash).result()
        except RemoteError as error:
            print(f"a crashed worker        -> RemoteError({error})")
        futures = [Isolate.run(_fibonacci, n) for n in range(50)]
        total = sum(future.result() for future in futures)
        print(f"50 concurrent runs      -> sum of fibonacci(0..49) = {total}")
    finally:
        shutdown()
    print(f"Demo finished in {time.perf_counter() - started:.1f} s")
    return 0
