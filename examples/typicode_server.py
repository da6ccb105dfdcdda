"""A local stand-in for jsonplaceholder.typicode.com, for the ports example and its tests.

Deterministic data with jsonplaceholder's shapes and counts (5000 photos, 100
albums, 500 comments, 200 todos, 10 users), served on 127.0.0.1 from a
thread. ``failing`` makes chosen resources answer 500, to show errors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import orjson

COUNTS = {"photos": 5000, "albums": 100, "comments": 500, "todos": 200, "users": 10}
_WORDS = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
]


def _words(seed: int, count: int) -> str:
    return " ".join(_WORDS[(seed * 7 + i * 3) % len(_WORDS)] for i in range(count))


def _photo(i: int) -> dict[str, Any]:
    color = f"{(i * 2654435761) % 0xFFFFFF:06x}"
    return {
        "albumId": i // 50 + 1,
        "id": i + 1,
        "title": _words(i, 5),
        "url": f"https://via.placeholder.com/600/{color}",
        "thumbnailUrl": f"https://via.placeholder.com/150/{color}",
    }


def _album(i: int) -> dict[str, Any]:
    return {"userId": i // 10 + 1, "id": i + 1, "title": _words(i, 4)}


def _comment(i: int) -> dict[str, Any]:
    return {
        "postId": i // 5 + 1,
        "id": i + 1,
        "name": _words(i, 3),
        "email": f"user{i + 1}@example.com",
        "body": _words(i, 12),
    }


def _todo(i: int) -> dict[str, Any]:
    return {"userId": i // 20 + 1, "id": i + 1, "title": _words(i, 4), "completed": i % 3 == 0}


def _user(i: int) -> dict[str, Any]:
    return {
        "id": i + 1,
        "name": f"User Number{i + 1}",
        "username": f"user{i + 1}",
        "email": f"user{i + 1}@example.com",
        "address": {
            "street": f"{i + 1} Main Street",
            "suite": f"Apt. {100 + i}",
            "city": f"Town {i + 1}",
            "zipcode": f"{10000 + i:05d}",
            "geo": {"lat": f"{-37.3 + i:.4f}", "lng": f"{81.1 - i:.4f}"},
        },
        "phone": f"1-770-736-{8031 + i:04d}",
        "website": f"user{i + 1}.example.org",
        "company": {
            "name": f"Company {i + 1}",
            "catchPhrase": _words(i, 3),
            "bs": _words(i + 1, 3),
        },
    }


_MAKERS: dict[str, Callable[[int], dict[str, Any]]] = {
    "photos": _photo,
    "albums": _album,
    "comments": _comment,
    "todos": _todo,
    "users": _user,
}
BODIES = {
    name: orjson.dumps([make(i) for i in range(COUNTS[name])]) for name, make in _MAKERS.items()
}


class TypicodeServer:
    """Serves ``GET /<resource>`` on 127.0.0.1 until closed; use as a context manager.

    Args:
        failing: Resources that answer ``500 Internal Server Error``.
    """

    def __init__(self, failing: Collection[str] = ()) -> None:
        failing_set = frozenset(failing)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.strip("/").split("?")[0]
                if name in failing_set:
                    self._answer(500, b'{"error": "internal server error"}')
                elif name in BODIES:
                    self._answer(200, BODIES[name])
                else:
                    self._answer(404, b"{}")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the example prints what matters

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        """Stop serving; idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()

    def __enter__(self) -> TypicodeServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
