"""The supervisor: the main isolate's inbox, and the owner and watcher of every isolate.

One supervisor actor runs per driver, on the driver's node. It

- receives what isolates send to the main isolate's ports and hands it to
  the driver, which long-polls ``take`` (Ray actors cannot call a driver);
- creates every spawned isolate, whoever asks, so that isolates outlive the
  isolate that spawned them (a Ray actor dies with its owner) and end with
  the main isolate, as in Dart;
- keeps one ``lifetime`` call pending on every isolate: it returns when the
  isolate ends by itself and fails when its process or node dies, so exit
  listeners, kept here rather than in the isolate, fire exactly once for
  every ending.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import exceptions as ray_errors

from ._capability import Capability
from ._codec import INLINE, Item, needs_fetch
from ._context import CONTROL_PORT, forget, new_id
from ._errors import IsolateSpawnException, from_ray
from ._inbox import Inbox
from ._outbox import Outbox
from ._ports import SendPort

__all__ = ["SpawnRequest", "Supervisor", "supervisor_name"]

NO_RESPONSE: tuple[int, Any, None] = (INLINE, None, None)


def supervisor_name(job_id: str) -> str:
    """The supervisor's actor name, unique per job so any worker of the job finds it."""
    return f"rayisolates-supervisor-{job_id}"


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    """Everything a new isolate needs, already encoded by the spawner."""

    entry: bytes | None  # cloudpickled entry point (spawn), or None (spawn_uri)
    uri: str | None  # "package.module:function" or an absolute path to a .py file
    args: list[str] | None  # spawn_uri's args
    message: tuple[int, Any, Any]  # encoded message
    paused: bool
    errors_are_fatal: bool
    on_exit: SendPort[Any] | None
    on_error: SendPort[Any] | None
    debug_name: str | None
    options: dict[str, Any]


@dataclass(slots=True)
class _Record:
    host: Any
    debug_name: str | None
    terminate: Capability
    exit_listeners: dict[SendPort[Any], tuple[int, Any, Any]] = field(default_factory=dict)
    killed: bool = False


class Supervisor:
    """The actor class (wrapped with ``ray.remote`` where it is started)."""

    def __init__(self, main_id: str, pool_size: int = 0) -> None:
        self._main_id = main_id
        self._pool_size = pool_size
        self._idle: list[tuple[Any, str]] = []  # started hosts waiting for a spawn
        self._filling = 0
        self._batches: list[tuple[str, int, list[Item]]] = []
        self._end = 0  # batches ever queued for the driver
        self._ack_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._arrived: asyncio.Event | None = None
        self._outbox: Outbox | None = None
        self._isolates: dict[str, _Record] = {}
        self._ended: dict[str, dict[str, Any]] = {}
        self._controls = Inbox(self._run_controls)

    def __repr__(self) -> str:
        return "rayisolates-supervisor"

    # The main isolate's inbox ----------------------------------------------

    def _queue(self, sender: str, seq: int, items: list[Item]) -> int:
        self._batches.append((sender, seq, items))
        self._end += 1
        if self._arrived is not None:
            self._arrived.set()
        return self._end

    async def deliver(self, sender: str, seq: int, items: list[Item]) -> None:
        """A batch for the main isolate's ports.

        Returns at once, unless the batch holds objects: then only after the
        driver has taken and fetched it, so the sender may end safely.
        """
        position = self._queue(sender, seq, items)
        if needs_fetch(items):
            fetched: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._ack_waiters.append((position, fetched))
            await fetched

    async def take(self, processed: int) -> tuple[list[tuple[str, int, list[Item]]], int]:
        """The driver's long poll: wait for batches, return them all.

        Args:
            processed: How many batches the driver has fully handled so far.
        """
        waiting = []
        for position, fetched in self._ack_waiters:
            if position <= processed:
                if not fetched.done():
                    fetched.set_result(None)
            else:
                waiting.append((position, fetched))
        self._ack_waiters = waiting
        if self._arrived is None:
            self._arrived = asyncio.Event()
        while not self._batches:
            self._arrived.clear()
            await self._arrived.wait()
        batches, self._batches = self._batches, []
        return batches, self._end

    def _queue_local(self, sender: str, seq: int, items: list[Item]) -> None:
        self._queue(sender, seq, items)

    def _sender(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(
                f"supervisor-{self._main_id}",
                asyncio.get_running_loop(),
                own_id=self._main_id,
                local=self._queue_local,
            )
        return self._outbox

    def _send(self, port: SendPort[Any], item: tuple[int, Any, Any]) -> None:
        self._sender().add(port.isolate_id, port.route, (port.port_id, *item))

    # Spawning -----------------------------------------------------------------

    async def spawn(self, request: SpawnRequest) -> Any:
        """Create, start and start watching a new isolate; returns its ``Isolate`` handle."""
        from ._host import IsolateHost, host_options
        from ._isolate import Isolate

        if not request.options and self._idle:
            host, isolate_id = self._idle.pop()
            asyncio.get_running_loop().create_task(self._refill())
        else:
            isolate_id = new_id("isolate")
            me = ray.get_runtime_context().current_actor
            options = host_options(request.options)
            host = _create_named(IsolateHost, options, request.debug_name, isolate_id, me)
        record = _Record(host, request.debug_name, Capability())
        if request.on_exit is not None:
            record.exit_listeners[request.on_exit] = NO_RESPONSE
        pause = Capability()
        cause: BaseException | None = None
        try:
            await host.start.remote(request, self._main_id, pause, record.terminate)
        except ray_errors.RayError as error:
            ray.kill(host, no_restart=True)
            cause = from_ray(error, cancelled=asyncio.CancelledError, what="starting the isolate")
        if cause is not None:
            if isinstance(cause, IsolateSpawnException):
                raise cause
            name = request.debug_name or isolate_id
            raise IsolateSpawnException(f"isolate {name!r} could not start: {cause}") from cause
        self._isolates[isolate_id] = record
        forget(host.release.remote())
        asyncio.get_running_loop().create_task(self._watch(isolate_id, record))
        control: SendPort[Any] = SendPort(isolate_id, CONTROL_PORT, host)
        return Isolate.spawned(control, pause, record.terminate, request.debug_name)

    async def fill_pool(self) -> None:
        """Start idle hosts until the pool is full."""
        await asyncio.gather(
            *(self._refill() for _ in range(self._pool_size - len(self._idle) - self._filling))
        )

    async def _refill(self) -> None:
        """Start one idle host, if the pool is short of one.

        Pooled hosts have no Ray actor name: an isolate spawned from the pool
        shows its debug name in logs and ``Isolate.current()``, but not in
        Ray's state API.
        """
        from ._host import IsolateHost, host_options

        if len(self._idle) + self._filling >= self._pool_size:
            return
        self._filling += 1
        try:
            isolate_id = new_id("isolate")
            me = ray.get_runtime_context().current_actor
            host_class: Any = IsolateHost
            host = host_class.options(**host_options({})).remote(None, isolate_id, me)
            await host.warm.remote()
            self._idle.append((host, isolate_id))
            # The driver polls it from now on: its first message will not wait
            # for a connection to be made, nor for a poll to arrive.
            main: SendPort[Any] = SendPort(self._main_id, CONTROL_PORT, me)
            self._send(main, (INLINE, ("pool_host", (isolate_id, host)), None))
        except ray_errors.RayError:
            pass  # the pool is an optimization: spawns create hosts as needed
        finally:
            self._filling -= 1

    async def _watch(self, isolate_id: str, record: _Record) -> None:
        info: dict[str, Any] | None = None
        while info is None:
            try:
                info = await record.host.lifetime.remote()
            except ray_errors.ActorUnavailableError:
                await asyncio.sleep(0.5)  # unreachable for now; death is confirmed later
            except ray_errors.RayError as error:
                reason = "killed" if record.killed else "crashed"
                info = {"reason": reason, "detail": str(error).splitlines()[0]}
        self._isolates.pop(isolate_id, None)
        self._ended[isolate_id] = info
        for port, response in record.exit_listeners.items():
            self._send(port, response)
        if self._outbox is not None:
            self._outbox.forget(isolate_id)
        ray.kill(record.host, no_restart=True)

    # Control: exit listeners, immediate kills, the main isolate's control port -----

    async def control(self, sender: str, seq: int, action: str, args: tuple[Any, ...]) -> None:
        """An ordered control message: for the supervisor, or for the main isolate.

        The main isolate's control port is this actor: its control messages
        are queued for the driver like port messages, in their own sequence.
        """
        if action in _SUPERVISOR_ACTIONS:
            self._controls.receive(sender, seq, [(action, args)])
        else:
            self._queue(f"{sender}/control", seq, [(CONTROL_PORT, INLINE, (action, args), None)])

    def _run_controls(self, controls: list[tuple[Any, Any]]) -> None:
        for action, args in controls:
            getattr(self, f"_{action}")(*args)

    def _add_exit_listener(
        self, isolate_id: str, port: SendPort[Any], response: tuple[int, Any, Any]
    ) -> None:
        record = self._isolates.get(isolate_id)
        if record is None:
            self._send(port, response)  # already ended
        else:
            record.exit_listeners[port] = response

    def _remove_exit_listener(self, isolate_id: str, port: SendPort[Any]) -> None:
        record = self._isolates.get(isolate_id)
        if record is not None:
            record.exit_listeners.pop(port, None)

    def _kill_now(self, isolate_id: str, capability: Capability) -> None:
        record = self._isolates.get(isolate_id)
        if record is not None and capability == record.terminate:
            record.killed = True
            ray.kill(record.host, no_restart=True)

    async def exit_info(self, isolate_id: str) -> dict[str, Any] | None:
        """How the isolate ended, or ``None`` while it runs (or if unknown)."""
        return self._ended.get(isolate_id)


_SUPERVISOR_ACTIONS = frozenset({"add_exit_listener", "remove_exit_listener", "kill_now"})


def _create_named(
    host_class: Any, options: dict[str, Any], debug_name: str | None, *args: Any
) -> Any:
    """Start the host actor, named after ``debug_name`` where Ray shows actors.

    Ray actor names are unique, debug names need not be: a taken name gets a
    counter (``worker (2)``).
    """
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
