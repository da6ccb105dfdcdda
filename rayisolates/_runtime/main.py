"""The main isolate: the driver process, and the factory of every process's default context.

A Ray driver cannot be called by actors, so the main isolate receives in
three ways, all driven from here:

- from spawned isolates on other nodes, over the link of
  ``_transport.mainlink``: a poll kept pending on each isolate that talks to
  the main isolate, and the replies to the driver's own ``deliver_from_main``
  calls;
- from spawned isolates that reach the driver directly (a Unix socket on
  its node, TCP from others: ``_transport.direct``), once their link has
  nothing unacknowledged;
- from anything else (``Isolate.run`` computations, the supervisor's exit
  notices, control records for the main isolate, and what an isolate on this
  node sends that holds Ray objects), through the supervisor, which queues
  it until the driver's relay pump takes it.

All feed one receiver, which keeps each sender's messages in order. The
driver's loop runs on a background thread, so ports work from plain scripts
and from ``asyncio.run(main())`` alike; it also carries the transport's own
work (opening stored messages, the relay pump, the main isolate's sends to
itself), so a handler that blocks it holds those up, as a blocked Dart event
loop holds up its isolate. Its pieces are put together by ``assembly``.
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import concurrent.futures
import contextlib
import os
from typing import TYPE_CHECKING, Any, NoReturn

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .._capability import Capability
from .._context.connection import across_nodes, direct_channels, settings
from .._context.context import Context
from .._context.figures import isolate_figures, live_pools, live_workers
from .._context.loop import BackgroundLoop
from .._transport.direct import Reach, sweep
from .._transport.handshake import new_secret
from .._transport.mainlink import DriverLinks
from .._transport.rpc import RETRY, acall, fire, outcome, when_done
from .._transport.wire import (
    SUPERVISOR_NAMESPACE,
    Ended,
    Item,
    PollMe,
    SpawnRequest,
    StatusAsked,
    control_sender,
    direct_sender,
    new_id,
    sender_isolate,
    supervisor_name,
)
from .assembly import Kind, Receiving, assemble, direct_here
from .leases import Leases, leases_for
from .supervisor import Supervisor
from .worker import start_worker_context

if TYPE_CHECKING:
    from .._isolate import Isolate
    from .._sendport import SendPort

__all__ = ["MainRuntime", "start_context"]

_SHUTDOWN_GRACE_SECONDS = 10.0
_REMEMBERED_ENDINGS = 4096  # ended isolates whose late duplicates are recognized and dropped


class MainRuntime:
    """The driver's isolate: its supervisor, background loop, links and relay pump."""

    def __init__(self) -> None:
        runtime = ray.get_runtime_context()
        self.main_id = new_id("main")
        self._background = BackgroundLoop("rayisolates-main")
        self.loop = self._background.loop
        self._ended: collections.deque[str] = collections.deque(maxlen=_REMEMBERED_ENDINGS)
        self._ended_set: set[str] = set()
        reach = Reach(new_secret(), across_nodes()) if direct_channels() else None
        direct = None if reach is None else direct_here(reach)
        if direct is not None and direct.folder is not None:
            sweep(direct.folder)  # sockets of isolates killed earlier (with their actors)
        self.supervisor = (
            ray.remote(Supervisor)
            .options(
                name=supervisor_name(runtime.get_job_id()),
                namespace=SUPERVISOR_NAMESPACE,
                num_cpus=0,
                max_restarts=0,
                max_concurrency=100_000,
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    runtime.get_node_id(), soft=False
                ),
            )
            .remote(self.main_id, settings["isolate_pool"], reach)
        )
        self.context = assemble(
            Kind(
                self.main_id,
                "main",
                route=self.supervisor,
                loop=self.loop,
                runs_on_own_loop=False,
                supervisor=lambda: self.supervisor,
                over_ray=self._deliver_to_isolate,
                direct=direct,
                on_direct_batch=self._accept_from_isolate,
                receiving=Receiving(
                    Capability(),
                    Capability(),
                    on_control=self._on_control,
                    kill=_thread.interrupt_main,  # as Ctrl-C would
                ),
                metrics=True,
            ),
            self,
        )
        self.sender, self.endpoint = self.context.sender, self.context.endpoint
        if self.endpoint is not None and self.endpoint.address is not None:
            # Isolates on other nodes ask the supervisor where the main isolate listens.
            ray.get(self.supervisor.main_listens.remote(self.endpoint.address))
        self.ports, self.receiver, self.actions = self.context.receiving()
        self.links = DriverLinks(
            received=self.receiver.received,
            accept=self._accept_from_isolate,
            poll=lambda route, ack, resend_from: fire(route.poll, ack, resend_from),
            forget=self._isolate_ended,
        )
        self._pump = self._background.submit(self._relay_pump())
        self.leases = Leases(
            lambda: self.supervisor,
            self.context.supervise,
            leases_for(settings["isolate_pool"]),
        )
        self.leases.ask()

    # Receiving ----------------------------------------------------------------------

    def _accept_from_isolate(self, sender: str, seq: int, items: list[Item]) -> None:
        """A batch from a spawned isolate: polled, carried in a reply, or sent directly."""
        if sender_isolate(sender) not in self._ended_set:  # a late copy: it has ended
            self.receiver.accept(sender, seq, items)

    async def _relay_pump(self) -> None:
        """Take what the supervisor relays, in order; batches with objects are fetched first."""
        position = 0
        while True:
            batches, position_after = await acall(self.supervisor.take, position)
            for sender, seq, items in batches:
                await self.receiver.open_and_accept(sender, seq, items)
            position = position_after

    def _on_control(self, record: Any) -> None:
        """A control record for the main isolate (from the relay, or from itself)."""
        if isinstance(record, PollMe):
            self.links.watch(record.isolate_id, record.route)
        elif isinstance(record, Ended):
            self.receiver.forget(direct_sender(record.isolate_id))
            if self.endpoint is not None:
                self.endpoint.forget(record.isolate_id)
        elif isinstance(record, StatusAsked):
            fire(self.supervisor.driver_status, record.request_id, self.status())
        else:  # acts now, in order with the port messages around it
            self.actions.apply(record)

    def _isolate_ended(self, isolate_id: str) -> None:
        """An isolate has ended and handed everything over: forget it."""
        if len(self._ended) == self._ended.maxlen:
            self._ended_set.discard(self._ended[0])
        self._ended.append(isolate_id)
        self._ended_set.add(isolate_id)
        for sender in (isolate_id, control_sender(isolate_id)):
            self.receiver.forget(sender)  # its direct sequence: when the supervisor says Ended
        self.sender.outbox.forget(isolate_id)
        self.sender.controls.forget(isolate_id)

    # Sending --------------------------------------------------------------------------

    def _deliver_to_isolate(
        self, destination: str, route: Any, sender: str, seq: int, batch: list[Any]
    ) -> concurrent.futures.Future[Any]:
        """A batch to an isolate: its reply brings back what the isolate answered meanwhile."""
        self.links.watch(destination, route)
        ack, resend_from = self.links.arguments(destination)
        future = fire(route.deliver_from_main, sender, seq, batch, ack, resend_from)

        def replied(done: concurrent.futures.Future[Any]) -> None:
            error = None if done.cancelled() else done.exception()
            if error is None:
                self.links.answered(destination, done.result())
            elif outcome(error) == RETRY:
                self.links.failed(destination)

        when_done(future, replied)
        return future

    # The runtime -------------------------------------------------------------------------

    def exit(self, port: SendPort[Any] | None, message: Any) -> NoReturn:
        raise RuntimeError(
            "Isolate.exit() ends an isolate started with Isolate.spawn; the main isolate "
            "ends by returning (or sys.exit)"
        )

    def spawn_leased(self, request: SpawnRequest) -> concurrent.futures.Future[Isolate] | None:
        """Start ``request`` in a warm host this driver holds (``leases``), or ``None``."""
        return self.leases.spawn(request)

    def spawned(self, isolate: Isolate) -> None:
        """An isolate this process spawned: poll it from the start."""
        port = isolate.control_port
        self.links.watch(port.isolate_id, port.route)

    def status(self) -> dict[str, Any]:
        """The main isolate's figures and this process's pools, for ``rayisolates status``."""
        return {
            "main_id": self.main_id,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            **isolate_figures(self.ports, self.receiver, self.sender),
            "pools": live_pools(),
            "workers": live_workers(),
        }

    def close(self) -> None:
        """Deliver what is still queued, then end the supervisor and with it every isolate."""
        self.leases.close()
        with contextlib.suppress(Exception):
            self._background.submit(
                asyncio.wait_for(self.sender.drain(), _SHUTDOWN_GRACE_SECONDS)
            ).result(_SHUTDOWN_GRACE_SECONDS + 1)
        self._pump.cancel()
        self.context.close_channels()
        self._background.stop()
        ray.kill(self.supervisor, no_restart=True)


def start_context() -> Context:
    """This process's default context: the main isolate in a driver, else a send-only one."""
    if ray._private.worker.global_worker.mode == ray.SCRIPT_MODE:
        return MainRuntime().context
    return start_worker_context()
