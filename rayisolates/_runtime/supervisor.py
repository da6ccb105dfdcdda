"""The supervisor: the main isolate's relay, and the owner and watcher of every isolate.

One supervisor actor runs per driver, on the driver's node. It

- relays to the driver what reaches the main isolate other than over the
  link of ``_mainlink`` (messages from ``Isolate.run`` computations, control
  records for the main isolate, its own exit notices): the driver's relay
  pump takes them with ``take`` (Ray actors cannot call a driver);
- creates every spawned isolate, whoever asks, so that isolates outlive the
  isolate that spawned them (a Ray actor dies with its owner) and end with
  the main isolate, as in Dart;
- keeps one ``lifetime`` call pending on every isolate: it returns when the
  isolate ends by itself and fails when its process or node dies, so exit
  listeners, kept here rather than in the isolate, fire exactly once for
  every ending.

Every method may be called again after a failed call (``_rpc``): each is
idempotent (batches by sequence number, ``take`` by position, ``spawn`` by
the request's ``spawn_id``, for a minute after the spawn finished).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import exceptions as ray_errors

from .._capability import Capability
from .._errors import IsolateSpawnException, start_failure
from .._isolate import Isolate
from .._sendport import SendPort
from .._transport.codec import INLINE, needs_fetch
from .._transport.direct import Address, Reach
from .._transport.inbox import Inbox
from .._transport.outbox import Outbox
from .._transport.rpc import acall, call_in_background, transmit_batch, transmit_controls
from .._transport.wire import (
    CONTROL_PORT,
    SUPERVISOR,
    AddExitListener,
    Control,
    Encoded,
    Ended,
    Item,
    Kill,
    KillNow,
    Lease,
    PollMe,
    RemoveExitListener,
    Setup,
    SpawnRequest,
    Started,
    StatusAsked,
    control_sender,
    new_id,
)
from .host import IsolateHost, host_options
from .warm import WarmHosts

__all__ = ["Supervisor"]

NO_RESPONSE: Encoded = (INLINE, None, None)
# A spawn's result is given again to a repeat of its call (sent when the reply
# of the first was lost) for this long after the spawn finished, and for at
# most this many spawns: remembering the handle keeps its Ray actor handle, and
# with it Ray's records of the actor, alive (some 26 KB each).
_SPAWN_MEMORY_SECONDS = 60.0
_REMEMBERED_SPAWNS = 256
_PRELOADED_MODULES = 32  # modules of recent entry points that warm hosts import
_REMEMBERED_LEASES = 16  # answers to lease calls, given again to a repeated call
STATUS_SECONDS = 3.0  # how long rayisolates status waits for an isolate's answer


@dataclass(slots=True)
class _Record:
    host: Any
    terminate: Capability
    debug_name: str | None = None
    exit_listeners: dict[SendPort[Any], Encoded] = field(default_factory=dict)


class Supervisor:
    """The actor class (wrapped with ``ray.remote`` where it is started)."""

    def __init__(self, main_id: str, pool_size: int = 0, direct: Reach | None = None) -> None:
        self._main_id = main_id
        self._direct = direct  # what isolates need for direct channels (None: none)
        self._main_address: Address | None = None  # where the driver listens for other nodes
        self._sender_id = f"supervisor-{main_id}"
        # Warm hosts (handle, isolate id, what they were put together as) waiting,
        # starting, or leased to the main isolate, which starts them itself (``Lease``).
        self._warm: WarmHosts[tuple[Any, str, Setup], _Record] = WarmHosts(pool_size)
        # Modules recent entry points come from, most recent last: warm hosts import them.
        self._modules: collections.OrderedDict[str, None] = collections.OrderedDict()
        # The relay: batches for the driver, from position ``_first`` on.
        self._relayed: collections.deque[tuple[str, int, list[Item]]] = collections.deque()
        self._first = 0
        self._fetch_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._arrived: asyncio.Event | None = None
        self._own_seq = 0  # our own batches to the main isolate
        self._own_control_seq = 0  # our own control records to it (PollMe)
        self._outbox: Outbox[Item] = Outbox(self._sender_id, transmit_batch)
        self._forwarded: Outbox[Control] = Outbox(self._sender_id, transmit_controls)
        self._isolates: dict[str, _Record] = {}
        self._leases: collections.OrderedDict[str, list[Lease]] = collections.OrderedDict()
        self._idle_ready: asyncio.Event | None = None
        self._spawns: collections.OrderedDict[str, asyncio.Future[Isolate]] = (
            collections.OrderedDict()
        )
        self._controls: Inbox[Control] = Inbox(self._run_controls)
        self._status_answers: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def __repr__(self) -> str:
        return "rayisolates-supervisor"

    # The relay to the driver -----------------------------------------------------

    def _relay(self, sender: str, seq: int, items: list[Item]) -> int:
        self._relayed.append((sender, seq, items))
        if self._arrived is not None:
            self._arrived.set()
        return self._first + len(self._relayed)

    async def deliver(self, sender: str, seq: int, items: list[Item]) -> None:
        """A batch for the main isolate's ports.

        Returns at once, unless the batch holds objects: then only after the
        driver has taken and fetched it, so the sender may end safely.
        """
        after = self._relay(sender, seq, items)
        if needs_fetch(items):
            fetched: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._fetch_waiters.append((after, fetched))
            await fetched

    def main_listens(self, address: Address) -> None:
        """Where the driver listens for isolates on other nodes (told once, at its start)."""
        self._main_address = address

    def direct_address(self) -> Address | None:
        """Where the main isolate listens for other nodes: the supervisor is its route, so
        isolates ask here (``_transport.direct``)."""
        return self._main_address

    async def take(self, position: int) -> tuple[list[tuple[str, int, list[Item]]], int]:
        """The driver's long poll: what was relayed from ``position`` on, once there is some.

        Args:
            position: How many batches the driver has fully handled so far.

        Returns:
            The batches from ``position`` on, and the position after them.
        """
        while self._first < position and self._relayed:
            self._relayed.popleft()
            self._first += 1
        waiting = []
        for after, fetched in self._fetch_waiters:
            if after <= position:
                if not fetched.done():
                    fetched.set_result(None)
            else:
                waiting.append((after, fetched))
        self._fetch_waiters = waiting
        if self._arrived is None:
            self._arrived = asyncio.Event()
        while not self._relayed:
            self._arrived.clear()
            await self._arrived.wait()
        return list(self._relayed), self._first + len(self._relayed)

    def _relay_control(self, record: Control) -> None:
        """A control record of our own for the main isolate, in our own control sequence."""
        item: Item = (CONTROL_PORT, INLINE, record, None)
        self._relay(control_sender(self._sender_id), self._own_control_seq, [item])
        self._own_control_seq += 1

    def _send(self, port: SendPort[Any], encoded: Encoded) -> None:
        item: Item = (port.port_id, *encoded)
        if port.isolate_id == self._main_id:
            self._relay(self._sender_id, self._own_seq, [item])
            self._own_seq += 1
        else:
            self._outbox.add(port.isolate_id, port.route, item)

    # Spawning -----------------------------------------------------------------------

    async def spawn(self, request: SpawnRequest) -> Isolate:
        """Create, start and start watching a new isolate; returns its ``Isolate`` handle."""
        known = self._spawns.get(request.spawn_id)
        if known is None:
            known = self._spawns[request.spawn_id] = asyncio.get_running_loop().create_future()
            if len(self._spawns) > _REMEMBERED_SPAWNS:
                self._spawns.popitem(last=False)
            try:
                known.set_result(await self._spawn(request))
            except asyncio.CancelledError:
                known.cancel()
                raise
            except Exception as error:
                known.set_exception(error)
            finally:
                asyncio.get_running_loop().call_later(
                    _SPAWN_MEMORY_SECONDS, self._spawns.pop, request.spawn_id, None
                )
        return await asyncio.shield(known)

    async def _spawn(self, request: SpawnRequest) -> Isolate:
        me = ray.get_runtime_context().current_actor
        self._remember_module(request.module)
        waiting, to_start = self._warm.take() if not request.options else (None, 0)
        if waiting is not None:
            host, isolate_id, setup = waiting
        else:
            isolate_id = new_id("isolate")
            options = host_options(request.options)
            host = _create_named(options, request.debug_name, isolate_id, me)
            setup = self._new_setup()
        record = _Record(host, setup.terminate, request.debug_name)
        if request.on_exit is not None:
            record.exit_listeners[request.on_exit] = NO_RESPONSE
        failure: BaseException | None = None
        try:
            await acall(host.start, request, setup)
        except ray_errors.RayError as error:
            ray.kill(host, no_restart=True)
            name = request.debug_name or isolate_id
            failure = start_failure(error, name, cancelled=asyncio.CancelledError)
        self._start_hosts(to_start)  # only now: starting a process is not on this spawn's way
        if failure is not None:  # raised outside the except block: no Ray error as context
            raise failure
        self._isolates[isolate_id] = record
        call_in_background(host.release)
        asyncio.get_running_loop().create_task(self._watch(isolate_id, record))
        control: SendPort[Any] = SendPort(isolate_id, CONTROL_PORT, host)
        return Isolate._handle(control, setup.pause, setup.terminate, request.debug_name)

    def _remember_module(self, module: str | None) -> None:
        if module is not None:
            self._modules[module] = None
            self._modules.move_to_end(module)
            if len(self._modules) > _PRELOADED_MODULES:
                self._modules.popitem(last=False)

    async def fill_pool(self) -> None:
        """Start warm hosts until the pool is full."""
        await asyncio.gather(*(self._start_host() for _ in range(self._warm.to_start())))

    def _start_hosts(self, count: int) -> None:
        for _ in range(count):
            asyncio.get_running_loop().create_task(self._start_host())

    async def lease(self, lease_id: str, count: int) -> list[Lease]:
        """Set aside up to ``count`` warm hosts for the main isolate (at least one: waits
        for the pool to have one). Idempotent per ``lease_id``."""
        answered = self._leases.get(lease_id)
        if answered is not None:
            return answered
        while not self._warm.waiting:
            if self._idle_ready is None:
                self._idle_ready = asyncio.Event()
            self._idle_ready.clear()
            await self._idle_ready.wait()
        leases: list[Lease] = []
        while len(leases) < count and (waiting := self._warm.take_for_lease()) is not None:
            host, isolate_id, setup = waiting
            record = _Record(host, setup.terminate)
            self._start_hosts(self._warm.lease(isolate_id, record))
            asyncio.get_running_loop().create_task(self._watch(isolate_id, record))
            leases.append(Lease(isolate_id, host, setup))
        self._leases[lease_id] = leases
        if len(self._leases) > _REMEMBERED_LEASES:
            self._leases.popitem(last=False)
        return leases

    def _started(self, record: Started) -> None:
        """The main isolate started a leased host: an isolate like any other from now on."""
        known, to_start = self._warm.leased_started(record.isolate_id)
        self._remember_module(record.module)
        self._start_hosts(to_start)
        if known is None:  # it has ended already (or was never leased)
            if record.on_exit is not None:
                self._send(record.on_exit, NO_RESPONSE)
            return
        known.debug_name = record.debug_name
        if record.on_exit is not None:
            known.exit_listeners[record.on_exit] = NO_RESPONSE
        self._isolates[record.isolate_id] = known

    def _new_setup(self) -> Setup:
        """A new isolate's: fresh capabilities, this driver's main isolate and reach."""
        return Setup(self._main_id, Capability(), Capability(), self._direct)

    async def _start_host(self) -> None:
        """Start one warm host (counted as starting already: ``WarmHosts.to_start``).

        Pooled hosts have no Ray actor name: an isolate spawned from the pool
        shows its debug name in logs and ``Isolate.current()``, but not in
        Ray's state API.
        """
        try:
            isolate_id = new_id("isolate")
            me = ray.get_runtime_context().current_actor
            host_class: Any = IsolateHost
            host = host_class.options(**host_options({})).remote(None, isolate_id, me)
            setup = self._new_setup()
            await acall(host.warm, list(self._modules), setup)
        except ray_errors.RayError:
            self._warm.failed()  # the pool is an optimization: spawns create hosts as needed
            return
        # The driver polls it from now on: its first message will not wait for a poll to
        # be asked for and to arrive.
        self._relay_control(PollMe(isolate_id, host))
        self._start_hosts(self._warm.started((host, isolate_id, setup)))
        if self._idle_ready is not None:
            self._idle_ready.set()

    async def _watch(self, isolate_id: str, record: _Record) -> None:
        with contextlib.suppress(ray_errors.RayError):  # its process or node died: ended too
            await acall(record.host.lifetime)
        self._isolates.pop(isolate_id, None)
        self._start_hosts(self._warm.ended(isolate_id))  # a leased one frees its place
        if self._direct:  # after what it relayed: the driver may forget its direct sequence
            self._relay_control(Ended(isolate_id))
        for port, response in record.exit_listeners.items():
            self._send(port, response)
        self._outbox.forget(isolate_id)
        self._forwarded.forget(isolate_id)
        self._controls.forget(isolate_id)
        ray.kill(record.host, no_restart=True)

    # Control: exit listeners, immediate kills, and records for the main isolate -------------

    async def control(
        self, destination: str, sender: str, seq: int, records: list[Control]
    ) -> None:
        """Control records: for the supervisor, or for the main isolate (relayed to it).

        The main isolate's control port is this actor; records for it keep
        their own sequence (``wire.control_sender``).
        """
        if destination == SUPERVISOR:
            self._controls.receive(sender, seq, records)
        else:
            items: list[Item] = [(CONTROL_PORT, INLINE, record, None) for record in records]
            self._relay(control_sender(sender), seq, items)

    def _known(self, isolate_id: str) -> _Record | None:
        return self._isolates.get(isolate_id) or self._warm.get(isolate_id)

    def _run_controls(self, records: list[Control]) -> None:
        for record in records:
            if isinstance(record, Started):
                self._started(record)
            elif isinstance(record, AddExitListener):
                known = self._known(record.isolate_id)
                if known is None:
                    self._send(record.port, record.response)  # it has ended already
                else:
                    known.exit_listeners[record.port] = record.response
            elif isinstance(record, RemoveExitListener):
                known = self._known(record.isolate_id)
                if known is not None:
                    known.exit_listeners.pop(record.port, None)
            elif isinstance(record, KillNow):
                known = self._known(record.isolate_id)
                if known is not None and record.capability == known.terminate:
                    ray.kill(known.host, no_restart=True)
            elif isinstance(record, Kill):  # after the listener changes sent before it
                known = self._known(record.isolate_id)
                if known is not None:
                    self._forwarded.add(record.isolate_id, known.host, record)

    # rayisolates status ------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """This driver's main isolate, its live isolates, pools and workers, as they are now.

        Each isolate answers on its control thread (a busy one too); one that
        does not within ``STATUS_SECONDS`` is listed as ``unreachable``. The
        driver answers through the relay (``StatusAsked``).
        """
        request_id = new_id("status")
        answer = self._status_answers[request_id] = asyncio.get_running_loop().create_future()
        self._relay_control(StatusAsked(request_id))
        records = list(self._isolates.items())
        asked = [_isolate_status(isolate_id, record) for isolate_id, record in records]
        isolates = await asyncio.gather(*asked)
        try:
            main = await asyncio.wait_for(answer, STATUS_SECONDS)
        except TimeoutError:
            main = {"main_id": self._main_id, "state": "unreachable", "pools": []}
        finally:
            self._status_answers.pop(request_id, None)
        pools = [{"owner": "main", **pool} for pool in main.pop("pools")]
        workers = [
            {"name": "main", "isolate_id": self._main_id, **worker}
            for worker in main.pop("workers", [])
        ]
        for isolate in isolates:
            owner = isolate["debug_name"] or isolate["isolate_id"]
            pools.extend({"owner": owner, **pool} for pool in isolate.pop("pools", []))
            workers.extend(
                {"name": owner, "isolate_id": isolate["isolate_id"], **worker}
                for worker in isolate.pop("workers", [])
            )
        return {
            "job_id": ray.get_runtime_context().get_job_id(),
            "main": main,
            "isolates": isolates,
            "pools": pools,
            "workers": workers,
            # waiting here or held by the driver (leased, not started yet)
            "idle_pooled_hosts": self._warm.ready,
        }

    def driver_status(self, request_id: str, figures: dict[str, Any]) -> None:
        """The driver's answer to a ``StatusAsked``."""
        answer = self._status_answers.get(request_id)
        if answer is not None and not answer.done():
            answer.set_result(figures)

    def warm_pool(self) -> dict[str, int]:
        """The isolate pool's hosts by place: its size, and how many wait, start or are
        leased to the driver (``rayisolates bench`` waits with it for refills to finish)."""
        warm = self._warm
        return {
            "size": warm.size,
            "waiting": len(warm.waiting),
            "starting": warm.starting,
            "leased": len(warm.leased),
        }

    def sizes(self) -> dict[str, int]:
        """How much the supervisor remembers (it must not grow with isolates that ended)."""
        return {
            "isolates": len(self._isolates),
            "leased": len(self._warm.leased),
            "relayed": len(self._relayed),
            "spawns": len(self._spawns),
            "control_senders": self._controls.senders(),
            "outbox_destinations": self._outbox.destinations(),
            "forwarding_destinations": self._forwarded.destinations(),
        }


async def _isolate_status(isolate_id: str, record: _Record) -> dict[str, Any]:
    try:
        figures: dict[str, Any] = await asyncio.wait_for(
            record.host.status.remote(), STATUS_SECONDS
        )
        return figures
    except (TimeoutError, ray_errors.RayError):
        return {"isolate_id": isolate_id, "debug_name": record.debug_name, "state": "unreachable"}


def _create_named(options: dict[str, Any], debug_name: str | None, *args: Any) -> Any:
    """Start the host actor, named after ``debug_name`` where Ray shows actors.

    Ray actor names are unique, debug names need not be: a taken name gets a
    counter (``worker (2)``).
    """
    host_class: Any = IsolateHost
    if debug_name is None:
        return host_class.options(**options).remote(debug_name, *args)
    for attempt in range(1, 1000):
        name = debug_name if attempt == 1 else f"{debug_name} ({attempt})"
        try:
            return host_class.options(name=name, **options).remote(debug_name, *args)
        except ValueError as error:
            if "already taken" not in str(error) and "already exists" not in str(error):
                raise
    raise IsolateSpawnException(f"too many isolates are named {debug_name!r}")
