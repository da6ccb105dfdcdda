"""A long-lived worker isolate that parses one file per request (Dart's long-running sample).

The worker sends back its own ``SendPort``; the main isolate then sends file
names one by one and gets each file's parsed contents back. ``None`` tells
the worker to shut down, which it does cleanly with ``Isolate.exit``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from rayisolates import Isolate, ReceivePort, SendPort

DATA = Path(__file__).resolve().parent / "data"
FILES = ["with_keys.json", "more_keys.json", "even_more_keys.json"]


async def read_and_parse_json_service(reply: SendPort[Any]) -> None:
    """The worker isolate: answer each file name with the file's parsed JSON."""
    requests: ReceivePort[str | None] = ReceivePort("requests")
    reply.send(requests.send_port)
    async for name in requests:
        if name is None:
            Isolate.exit(reply, "done")
        reply.send(orjson.loads((DATA / name).read_bytes()))


async def main() -> None:
    responses: ReceivePort[Any] = ReceivePort("responses")
    await Isolate.spawn(read_and_parse_json_service, responses.send_port, debug_name="parser")
    requests: SendPort[str | None] = await anext(responses)
    for name in FILES:
        requests.send(name)
        json_data = await anext(responses)
        print(f"{name}: {len(json_data)} keys")
    requests.send(None)
    assert await anext(responses) == "done"
    responses.close()
    print("The worker has shut down")


if __name__ == "__main__":
    asyncio.run(main())
