"""Parse a large log file in an isolate and stream its records back as they are parsed.

The parser is a generator running in another isolate (``Isolate.stream``):
records arrive while it works, at most ``buffer`` ahead of the reader, and
leaving the loop early stops it, its ``finally`` included.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rayisolates import Isolate, ReceivePort, SendPort

LINES = 200_000
LEVELS = ["INFO", "WARN", "ERROR"]


def write_log(path: Path) -> None:
    """A synthetic log: ``<seconds> <level> <service> <milliseconds>`` per line."""
    rng = random.Random(7)
    with path.open("w") as out:
        for i in range(LINES):
            level = rng.choices(LEVELS, weights=[90, 8, 2])[0]
            out.write(f"{i / 10:.1f} {level} svc-{rng.randrange(8)} {rng.randrange(1, 500)}\n")


def parse(path: str, report: SendPort[Any] | None = None) -> Iterator[dict[str, Any]]:
    """One record per line (runs in the isolate)."""
    read = 0
    try:
        with open(path) as lines:
            for line in lines:
                read += 1
                seconds, level, service, took = line.split()
                yield {"at": float(seconds), "level": level, "service": service, "ms": int(took)}
    finally:
        if report is not None:
            report.send(read)


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "service.log"
        write_log(path)

        started = time.perf_counter()
        errors, slowest = 0, 0
        async for record in Isolate.stream(parse, str(path), buffer=256):
            errors += record["level"] == "ERROR"
            slowest = max(slowest, record["ms"])
        elapsed = time.perf_counter() - started
        print(f"Streamed {LINES:,} records in {elapsed:.2f} s ({LINES / elapsed:,.0f} records/s)")
        print(f"Errors: {errors:,}; slowest request: {slowest} ms")

        report: ReceivePort[int] = ReceivePort()
        first_error = None
        async for record in Isolate.stream(parse, str(path), report.send_port, buffer=16):
            if record["level"] == "ERROR":
                first_error = record
                break  # stops the parser, whose finally reports how far it read
        read = await anext(report)
        report.close()
        assert first_error is not None
        print(f"First error at {first_error['at']} s; the parser stopped after {read} lines")


if __name__ == "__main__":
    asyncio.run(main())
