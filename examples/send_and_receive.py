"""Spawn a worker that hands its result back with ``Isolate.exit``.

The worker gets a ``SendPort``, parses the file, and exits with the data as
its final message: it is delivered before the isolate ends, and outlives it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from rayisolates import Isolate, ReceivePort, SendPort

DATA = Path(__file__).resolve().parent / "data" / "with_keys.json"


def read_and_parse_json(job: tuple[SendPort[dict[str, Any]], str]) -> None:
    """The worker isolate's entry point."""
    reply, path = job
    Isolate.exit(reply, orjson.loads(Path(path).read_bytes()))


async def main() -> None:
    async with ReceivePort[dict[str, Any]]() as port:
        await Isolate.spawn(read_and_parse_json, (port.send_port, str(DATA)))
        json_data = await anext(port)
    print(f"Number of JSON keys: {len(json_data)}")


if __name__ == "__main__":
    asyncio.run(main())
