"""A Ray worker that is not an isolate (an ``Isolate.run`` computation): it can only send."""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING, Any, NoReturn

from .._context.context import Context, find_supervisor
from .._context.loop import BackgroundLoop
from .._transport.wire import SpawnRequest, new_id
from .assembly import Kind, assemble

if TYPE_CHECKING:
    from .._isolate import Isolate
    from .._sendport import SendPort

__all__ = ["WorkerRuntime", "start_worker_context"]


class WorkerRuntime:
    """Sends from a background loop of its own; receives nothing."""

    def __init__(self) -> None:
        self._background = BackgroundLoop("rayisolates-sender")
        self.loop = self._background.loop

    def exit(self, port: SendPort[Any] | None, message: Any) -> NoReturn:
        raise RuntimeError(
            "Isolate.exit() ends an isolate started with Isolate.spawn; an Isolate.run "
            "computation ends by returning"
        )

    def spawned(self, isolate: Isolate) -> None:
        pass

    def spawn_leased(self, request: SpawnRequest) -> concurrent.futures.Future[Isolate] | None:
        return None  # only the main isolate holds warm hosts

    def close(self) -> None:
        self._background.stop()


def start_worker_context() -> Context:
    """The context of a Ray worker that is not an isolate host."""
    runtime = WorkerRuntime()
    supervisor: list[Any] = []

    def find() -> Any:
        if not supervisor:
            supervisor.append(find_supervisor())
        return supervisor[0]

    kind = Kind(
        new_id("worker"),
        None,
        route=None,
        loop=runtime.loop,
        runs_on_own_loop=False,
        supervisor=find,
    )
    return assemble(kind, runtime)
