"""Two-way ports with a long-lived background worker (the Dart guide's ports example).

``BackgroundWorker`` spawns an isolate that fetches typicode-style resources
over HTTP with httpx and sends back typed objects (``Photo``, ``Album``,
``Comment``, ``Todo``, ``User``). The main side waits for the worker to be
ready, exposes a stream per resource, and routes each response to the
stream that asked. An unknown resource or an HTTP error reaches the caller
as a ``ResourceError``; a worker that dies fails the streams in flight with
a ``RemoteError``; ``dispose()`` ends everything.

Run it as a script: it starts a local JSON server on 127.0.0.1 (see
``typicode_server.py``), or talks to ``--base-url``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson

from rayisolates import Isolate, ReceivePort, RemoteError, SendPort

CHUNK = 500  # items per message: fewer, larger messages


@dataclass(frozen=True, slots=True)
class Photo:
    album_id: int
    id: int
    title: str
    url: str
    thumbnail_url: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Photo:
        return cls(data["albumId"], data["id"], data["title"], data["url"], data["thumbnailUrl"])


@dataclass(frozen=True, slots=True)
class Album:
    user_id: int
    id: int
    title: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Album:
        return cls(data["userId"], data["id"], data["title"])


@dataclass(frozen=True, slots=True)
class Comment:
    post_id: int
    id: int
    name: str
    email: str
    body: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comment:
        return cls(data["postId"], data["id"], data["name"], data["email"], data["body"])


@dataclass(frozen=True, slots=True)
class Todo:
    user_id: int
    id: int
    title: str
    completed: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Todo:
        return cls(data["userId"], data["id"], data["title"], data["completed"])


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    username: str
    email: str
    city: str
    company: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> User:
        return cls(
            data["id"],
            data["name"],
            data["username"],
            data["email"],
            data["address"]["city"],
            data["company"]["name"],
        )


RESOURCES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "photos": Photo.from_json,
    "albums": Album.from_json,
    "comments": Comment.from_json,
    "todos": Todo.from_json,
    "users": User.from_json,
}


class ResourceError(Exception):
    """The worker could not deliver a resource (unknown name, HTTP error, disposed)."""


async def _fetch(
    client: httpx.AsyncClient, reply: SendPort[Any], request_id: int, resource: str
) -> None:
    """In the worker: fetch one resource and send it back in chunks, or the error."""
    parse = RESOURCES.get(resource)
    if parse is None:
        known = ", ".join(RESOURCES)
        reply.send((request_id, "error", f"unknown resource {resource!r} (known: {known})"))
        return
    try:
        response = await client.get(f"/{resource}")
        response.raise_for_status()
        items = [parse(item) for item in orjson.loads(response.content)]
    except (httpx.HTTPError, orjson.JSONDecodeError, KeyError) as error:
        reply.send((request_id, "error", f"fetching {resource} failed: {error}"))
        return
    for start in range(0, len(items), CHUNK):
        reply.send((request_id, "items", items[start : start + CHUNK]))
    reply.send((request_id, "done", len(items)))


async def _worker(job: tuple[SendPort[Any], str]) -> None:
    """The background isolate: serve requests until told to stop."""
    reply, base_url = job
    commands: ReceivePort[tuple[int, str] | None] = ReceivePort("commands")
    reply.send(commands.send_port)  # ready
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        fetches = set()
        async for command in commands:
            if command is None:
                break
            fetch = asyncio.create_task(_fetch(client, reply, *command))
            fetches.add(fetch)
            fetch.add_done_callback(fetches.discard)
        await asyncio.gather(*fetches)
    commands.close()


class BackgroundWorker:
    """A background isolate fetching typicode-style resources; one stream per request.

    Create it with ``await BackgroundWorker.start(base_url)``, which returns
    once the worker is ready to take requests.
    """

    _ENDED: ClassVar[str] = "ended"

    def __init__(self, isolate: Isolate, commands: SendPort[Any], responses: ReceivePort[Any]):
        self._isolate = isolate
        self._commands = commands
        self._responses = responses
        self._ids = itertools.count()
        self._requests: dict[int, asyncio.Queue[tuple[str, Any]]] = {}
        self._disposed = False
        self._router = asyncio.create_task(self._route())

    @classmethod
    async def start(cls, base_url: str) -> BackgroundWorker:
        """Spawn the worker and wait until it is ready."""
        responses: ReceivePort[Any] = ReceivePort("background-worker")
        isolate = await Isolate.spawn(
            _worker,
            (responses.send_port, base_url),
            on_exit=responses.send_port,
            debug_name="background-worker",
        )
        commands = await anext(responses)
        return cls(isolate, commands, responses)

    async def _route(self) -> None:
        async for message in self._responses:
            if message is None:  # the worker isolate has ended
                break
            request_id, kind, payload = message
            queue = self._requests.get(request_id)
            if queue is not None:
                queue.put_nowait((kind, payload))
        self._responses.close()
        for queue in self._requests.values():
            queue.put_nowait((self._ENDED, None))

    def stream(self, resource: str) -> AsyncIterator[Any]:
        """Request ``resource`` now; iterate the result to receive its items.

        Raises:
            ResourceError: (while iterating) unknown resource, HTTP error, or
                the worker was disposed.
            RemoteError: (while iterating) the worker isolate died.
        """
        if self._disposed:
            raise ResourceError("the background worker was disposed")
        request_id = next(self._ids)
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._requests[request_id] = queue
        self._commands.send((request_id, resource))
        return self._receive(request_id, queue)

    async def _receive(
        self, request_id: int, queue: asyncio.Queue[tuple[str, Any]]
    ) -> AsyncIterator[Any]:
        try:
            while True:
                kind, payload = await queue.get()
                if kind == "items":
                    for item in payload:
                        yield item
                elif kind == "done":
                    return
                elif kind == "error":
                    raise ResourceError(payload)
                elif kind == "disposed":
                    raise ResourceError("the background worker was disposed")
                else:
                    raise RemoteError("the background worker ended without answering")
        finally:
            self._requests.pop(request_id, None)

    def photos(self) -> AsyncIterator[Photo]:
        return self.stream("photos")

    def albums(self) -> AsyncIterator[Album]:
        return self.stream("albums")

    def comments(self) -> AsyncIterator[Comment]:
        return self.stream("comments")

    def todos(self) -> AsyncIterator[Todo]:
        return self.stream("todos")

    def users(self) -> AsyncIterator[User]:
        return self.stream("users")

    async def dispose(self) -> None:
        """Fail the requests in flight, stop the worker and wait until it has ended."""
        if self._disposed:
            return
        self._disposed = True
        for queue in self._requests.values():
            queue.put_nowait(("disposed", None))
        self._commands.send(None)
        await self._router


async def _count(stream: AsyncIterator[Any]) -> int:
    return sum([1 async for _ in stream])


async def run(base_url: str) -> dict[str, int]:
    """Fetch every resource at once through one worker; returns the counts."""
    worker = await BackgroundWorker.start(base_url)
    try:
        streams = {name: worker.stream(name) for name in RESOURCES}
        counts = await asyncio.gather(*(_count(stream) for stream in streams.values()))
        return dict(zip(streams, counts, strict=True))
    finally:
        await worker.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="a typicode-style server (default: start one locally)")
    arguments = parser.parse_args(argv)
    if arguments.base_url:
        counts = asyncio.run(run(arguments.base_url))
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from examples.typicode_server import TypicodeServer

        with TypicodeServer() as server:
            counts = asyncio.run(run(server.base_url))
    for name, count in counts.items():
        print(f"Received {count} {name}")


if __name__ == "__main__":
    main()
