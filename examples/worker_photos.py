"""The ports example's background worker again, as an ``IsolateWorker``: no ports, no ids.

``ports_example.py`` writes Dart's ``BackgroundWorker`` by hand: spawn an
isolate, trade ``SendPort``s, tag each request with an id, route answers and
errors back, dispose. Here the same worker is a plain class living in its own
isolate: its ``async def`` methods are called as if it were local (the
requests run at once, interleaved), a generator method streams its items,
and an error raised there is caught here as itself.

Run it as a script: it starts a local JSON server on 127.0.0.1 (see
``typicode_server.py``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from rayisolates import IsolateWorker

RESOURCES = ["photos", "albums", "comments", "todos", "users"]


class Typicode:
    """Lives in the worker isolate: one HTTP client, a method per kind of request."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=30)

    async def fetch(self, resource: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/{resource}")
        if response.is_error:
            raise LookupError(f"no {resource} here (HTTP {response.status_code})")
        items: list[dict[str, Any]] = orjson.loads(response.content)
        return items

    async def photo_titles(self, album_id: int) -> AsyncIterator[str]:
        for photo in await self.fetch("photos"):
            if photo["albumId"] == album_id:
                yield photo["title"]


async def run(base_url: str) -> None:
    async with await IsolateWorker.spawn(Typicode, base_url, debug_name="typicode") as worker:
        fetched = await asyncio.gather(*(worker.fetch(name) for name in RESOURCES))
        for name, items in zip(RESOURCES, fetched, strict=True):
            print(f"Received {len(items)} {name}")
        titles = [title async for title in worker.photo_titles(album_id=1)]
        print(f"Album 1 has {len(titles)} photos, the first titled {titles[0]!r}")
        try:
            await worker.fetch("posts")
        except LookupError as error:  # raised in the worker, caught here as itself
            print(f"Fetching posts failed: {error}")


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from examples.typicode_server import TypicodeServer

    with TypicodeServer() as server:
        asyncio.run(run(server.base_url))


if __name__ == "__main__":
    main()
