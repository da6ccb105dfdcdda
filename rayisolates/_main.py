"""The main isolate: the driver process, receiving through its supervisor.

A Ray driver cannot be called by actors, so what isolates send to the main
isolate goes to the supervisor actor on the driver's node; a task on the
main isolate's background loop long-polls it and dispatches to the ports,
whether the user's code runs in a plain script or under ``asyncio.run``.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ._codec import needs_fetch
from ._context import Context, is_spawned, new_id
from ._host import SYNC
from ._inbox import Message, decode, decode_now
from ._loop import BackgroundLoop
from ._runtime import settings
from ._supervisor import Supervisor, supervisor_name

if TYPE_CHECKING:
    from ._codec import Item
    from ._isolate import Isolate

__all__ = ["MainContext"]

_SHUTDOWN_GRACE_SECONDS = 10.0


class MainContext(Context):
    """The driver's isolate: its supervisor, background loop and inbox pump."""

    def __init__(self) -> None:
        runtime = ray.get_runtime_context()
        main_id = new_id("main")
        self._background = BackgroundLoop("rayisolates-main")
        supervisor = (
            ray.remote(Supervisor)
            .options(
                name=supervisor_name(runtime.get_job_id()),
                num_cpus=0,
                max_restarts=0,
                max_concurrency=100_000,
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    runtime.get_node_id(), soft=False
                ),
            )
            .remote(main_id, settings["isolate_pool"])
        )
        self._polls: set[str] = set()
        self._receiving = threading.RLock()  # polls dispatch from Ray's callback thread
        super().__init__(main_id, supervisor, self._background.loop)
        self.supervisor = supervisor
        self.debug_name = "main"
        self._pump = self._background.submit(self._pump_forever())

    def destination_opened(self, destination: str, route: Any) -> None:
        """Start polling an isolate we talk to: its replies then skip the supervisor."""
        if is_spawned(destination):
            self.loop.call_soon_threadsafe(self._start_poll, destination, route)

    def _start_poll(self, destination: str, route: Any) -> None:
        if destination not in self._polls:
            self._polls.add(destination)
            self._poll(destination, route)

    def received_from(self, destination: str) -> int | None:
        """How far we have received an isolate's batches, told it with each call."""
        if not is_spawned(destination):
            return None
        with self._receiving:
            return self.inbox.received(destination)

    def _poll(self, destination: str, route: Any) -> None:
        """Keep one call pending on the isolate; it returns with a batch for us.

        Batches come here, in replies to our deliver calls, or through the
        supervisor, in one sequence per sender; the inbox puts them back in
        order. A batch that needs nothing from the object store is
        dispatched straight from Ray's completion callback, saving a thread
        hop on the way to the reader.
        """
        reference = route.poll.remote(self.received_from(destination))
        reference.future().add_done_callback(lambda done: self._polled(destination, route, done))

    def _polled(self, destination: str, route: Any, done: Future[Any]) -> None:
        answer = None if done.exception() else done.result()
        if answer is None:  # the isolate has ended (or is unreachable)
            self.loop.call_soon_threadsafe(self._polls.discard, destination)
            return
        if answer == SYNC:  # it is ending: renew the poll, which confirms
            self._poll(destination, route)
            return
        if self._take(*answer):
            self._poll(destination, route)
        else:
            asyncio.run_coroutine_threadsafe(
                self._receive_then_poll(destination, route, *answer), self.loop
            )

    def replies_received(
        self, destination: str, batches: list[tuple[str, int, list[Item]]]
    ) -> None:
        for batch in batches:
            if not self._take(*batch):
                asyncio.run_coroutine_threadsafe(self._receive(*batch), self.loop)

    def _take(self, sender: str, seq: int, items: list[Item]) -> bool:
        """Dispatch a batch now, from this thread, unless it needs the object store first."""
        if needs_fetch(items):
            return False
        try:
            messages = decode_now(items)
        except Exception as error:  # keep the sequence: a lost batch must not stall it
            self.uncaught(error)
            messages = []
        self.receive(sender, seq, messages)
        return True

    async def _receive_then_poll(
        self, destination: str, route: Any, sender: str, seq: int, items: list[Item]
    ) -> None:
        await self._receive(sender, seq, items)
        self._poll(destination, route)

    async def _receive(self, sender: str, seq: int, items: list[Item]) -> None:
        try:
            messages = await decode(items)
        except Exception as error:  # keep the sequence: a lost batch must not stall it
            self.uncaught(error)
            messages = []
        self.receive(sender, seq, messages)

    def receive(self, sender: str, seq: int, messages: list[Message]) -> None:
        with self._receiving:
            self.inbox.receive(sender, seq, messages)

    def spawned(self, isolate: Isolate) -> None:
        """An isolate this process spawned: poll it from the start."""
        port = isolate.control_port
        self.destination_opened(port.isolate_id, port.route)

    async def _pump_forever(self) -> None:
        processed = 0
        while True:
            batches, end = await self.supervisor.take.remote(processed)
            for sender, seq, items in batches:
                await self._receive(sender, seq, items)
            processed = end

    def close(self) -> None:
        """Deliver what is still queued, then end the supervisor and with it every isolate."""
        with contextlib.suppress(Exception):
            self._background.submit(
                asyncio.wait_for(self.outbox.drain(), _SHUTDOWN_GRACE_SECONDS)
            ).result(_SHUTDOWN_GRACE_SECONDS + 1)
        self._pump.cancel()
        self._background.stop()
        ray.kill(self.supervisor, no_restart=True)

    def accepts_control_messages(self) -> bool:
        return True

    def _on_pool_host(self, isolate_id: str, route: Any) -> None:
        """The supervisor started an idle host: poll it before it is even spawned."""
        self.destination_opened(isolate_id, route)

    def kill(self) -> None:
        """Killing the main isolate interrupts the program, as Ctrl-C would."""
        _thread.interrupt_main()
