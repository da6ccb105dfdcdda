"""Why isolates exist: parse a large JSON blob without freezing the main event loop.

A heartbeat task ticks on the main loop every 10 ms. The same tens-of-MB
blob is parsed twice with orjson: once inside ``Isolate.run`` (the loop
keeps ticking), once on the main loop itself (the loop stalls).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from rayisolates import Isolate

RECORDS = 300_000
TICK_SECONDS = 0.01


def make_blob(records: int = RECORDS) -> bytes:
    """A deterministic JSON array of records, tens of MB."""
    return orjson.dumps(
        [
            {"id": i, "name": f"record {i}", "tags": ["a", "b", str(i % 97)], "score": i * 0.5}
            for i in range(records)
        ]
    )


def summarize(blob: bytes) -> tuple[int, float]:
    """Parse the blob; return the record count and the total score."""
    records: list[dict[str, Any]] = orjson.loads(blob)
    return len(records), sum(record["score"] for record in records)


async def heartbeat(ticks: list[int]) -> None:
    while True:
        await asyncio.sleep(TICK_SECONDS)
        ticks[0] += 1


async def ticks_during(work: Any) -> tuple[Any, int, float]:
    """Run ``work`` (a coroutine) with the heartbeat going; count its ticks."""
    ticks = [0]
    beating = asyncio.create_task(heartbeat(ticks))
    await asyncio.sleep(0)  # let the heartbeat start
    started = time.perf_counter()
    result = await work
    elapsed = time.perf_counter() - started
    beating.cancel()
    return result, ticks[0], elapsed


async def main() -> None:
    blob = make_blob()
    megabytes = len(blob) / 1e6
    await Isolate.run(summarize, b"[]")  # warm a worker, so only the parse is timed

    (count, total), isolate_ticks, isolate_seconds = await ticks_during(
        Isolate.run(summarize, blob)
    )

    async def on_the_main_loop() -> tuple[int, float]:
        return summarize(blob)

    (main_count, main_total), main_ticks, main_seconds = await ticks_during(on_the_main_loop())
    assert (count, total) == (main_count, main_total)

    print(f"Parsed {count:,} records ({megabytes:.1f} MB of JSON)")
    print(
        f"In an isolate:    {isolate_seconds:.2f} s, "
        f"main loop heartbeats during the parse: {isolate_ticks}"
    )
    print(
        f"On the main loop: {main_seconds:.2f} s, "
        f"main loop heartbeats during the parse: {main_ticks}"
    )


if __name__ == "__main__":
    asyncio.run(main())
