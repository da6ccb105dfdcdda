"""A spawned isolate: one async Ray actor hosting one event loop and its ports.

What arrives runs on the isolate's event loop, like Dart port events: the
actor's ``deliver`` and ``deliver_from_main`` calls, and the batches of
isolates on this node read from its direct channel (``_transport.direct``).
Two other threads of the actor act while the loop is busy: the control
thread (``control``: ping, pause, kill, ...; ``release``; ``status``) and
the poll thread (``poll``: the driver fetching what this isolate sends the
main isolate, see ``_transport.mainlink``). Its pieces are put together by
``assembly``; this module is its life.

An isolate's life (``HostRuntime.state``; the link and the receiver are told
when it starts ending)::

    created --start--> started (entry point loaded) --release--> running
      running --entry done, no port keeps it alive / kill / Isolate.exit /
                fatal error--> ending: no more events; what it sent is
                delivered, the spawns it asked for have started, and the
                driver has acknowledged its batches
      ending --> ended: ``lifetime`` returns, the supervisor fires the exit
                listeners and ends the actor
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import importlib.util
import inspect
import os
import pickle
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import ray

from .._capability import Capability
from .._context.context import install
from .._context.figures import isolate_figures, live_pools, live_workers
from .._context.metrics import start_exporting
from .._errors import IsolateExit, IsolateSpawnException
from .._sendport import SendPort
from .._transport.codec import decode, encode
from .._transport.direct import Address
from .._transport.inbox import Inbox
from .._transport.mainlink import CONFIRM_SECONDS, HostLink
from .._transport.wire import (
    CONTROL_PORT,
    CONTROL_THREAD,
    LOOP,
    RUNS_ON,
    SUPERVISOR_ACTOR,
    Control,
    Item,
    LinkAnswer,
    PollMe,
    Setup,
    SpawnRequest,
    runs_on,
)
from .assembly import Direct, Kind, Receiving, assemble, direct_here, export_metrics

if TYPE_CHECKING:
    from .._isolate import Isolate

__all__ = ["HostRuntime", "IsolateHost", "host_options"]

RUNNING, ENDING, ENDED = "running", "ending", "ended"
# As rayisolates status says it: running, with a pause holding its messages.
PAUSED = "paused"


def host_options(options: dict[str, Any]) -> dict[str, Any]:
    """Ray actor options for a host: no CPU reserved unless asked, never restarted."""
    return {
        "num_cpus": 0,
        "max_restarts": 0,
        "max_task_retries": 0,
        "max_concurrency": 10_000,
        **options,
    }


class HostRuntime:
    """One spawned isolate's pieces and its life (see the module docstring)."""

    def __init__(
        self,
        isolate_id: str,
        actor: Any,
        loop: asyncio.AbstractEventLoop,
        supervisor: Any,
        main_id: str,
        link: HostLink,
        pause: Capability,
        terminate: Capability,
        direct: Direct | None = None,
    ) -> None:
        self.isolate_id = isolate_id
        self.loop = loop
        self.link = link
        self._main_control: SendPort[Any] | None = None
        self._main_id = main_id
        self._supervisor = supervisor
        self._actor = actor
        self.state = RUNNING
        self.exit_future: asyncio.Future[None] = loop.create_future()
        self._acknowledged = asyncio.Event()
        self._entry: asyncio.Task[None] | None = None
        self._entry_running = True  # from creation: the entry point is about to run
        self._start: Callable[[], None] | None = None
        self._released = False
        self._loop_thread = threading.current_thread()

        self.context = assemble(
            Kind(
                isolate_id,
                None,  # given by its spawn (``spawned_as``)
                route=actor,
                loop=loop,
                runs_on_own_loop=True,
                supervisor=lambda: supervisor,
                direct=direct,
                direct_on_loop=True,
                main_link=(main_id, link),
                receiving=Receiving(
                    pause,
                    terminate,
                    on_control=self.apply_control,
                    kill=self._kill,
                    fatal_error=self.begin_exit,
                    ports_changed=self._ports_changed,
                    resumed=self._resumed,
                ),
            ),
            self,
        )
        self.sender, self.errors = self.context.sender, self.context.errors
        self.ports, self.receiver, self.actions = self.context.receiving()

    def spawned_as(self, debug_name: str | None, errors_are_fatal: bool) -> None:
        """What its spawn says of the isolate: its name, whether uncaught errors end it.
        Its figures are exported as metrics from now (a warm host's runtime is put
        together before any spawn, and is no isolate of anyone's until then)."""
        self.context.debug_name = debug_name
        self.errors.fatal = errors_are_fatal
        export_metrics(self.context)

    # Control records ---------------------------------------------------------------

    def apply_control(self, record: Control) -> None:
        """Act on a control record where ``wire.RUNS_ON`` says (any thread).

        Records that act between events arrive on the control port, in order
        with port messages, and act now, in the receiver's dispatch (which
        holds the messages that follow); what reaches the control port and is
        no such record is ignored.
        """
        if type(record) not in RUNS_ON:
            return
        where = runs_on(record)
        if where in (CONTROL_THREAD, LOOP):
            self.actions.apply(record)
        elif where == SUPERVISOR_ACTOR:
            self.sender.supervise(record)

    def _kill(self) -> None:
        """A kill (``BEFORE_NEXT_EVENT``): nothing more is dispatched from now; it ends on
        its loop."""
        self.receiver.stop()
        self.loop.call_soon_threadsafe(self.begin_exit)

    def request_poll(self) -> None:
        """Ask the driver to poll us: we have messages for the main isolate."""
        if self._main_control is None:
            self._main_control = SendPort(self._main_id, CONTROL_PORT, self._supervisor)
        self.sender.control(self._main_control, PollMe(self.isolate_id, self._actor))

    # Life ------------------------------------------------------------------------------

    def prepare(self, call: Callable[[], Any], paused: bool) -> None:
        """Get the entry point ready; it runs once released (and not paused)."""

        def start() -> None:
            self._entry = self.loop.create_task(self._run_entry(call))

        self._start = start
        if paused:
            self.receiver.pause(self.actions.pause_capability)

    def release(self) -> None:
        """Let the entry point run, now or on resume.

        Separate from :meth:`prepare` (which ``IsolateHost.start`` calls): an
        entry point that blocks the loop at once must not hold back the reply
        that tells the spawner the isolate started.
        """
        self._released = True
        if not self.receiver.paused and self.state == RUNNING:
            self._run_start()

    def _resumed(self) -> None:
        if threading.current_thread() is not self._loop_thread:
            self.loop.call_soon_threadsafe(self._resumed)
        elif self._released:
            self._run_start()

    def _run_start(self) -> None:
        start, self._start = self._start, None
        if start is not None:
            start()

    async def _run_entry(self, call: Callable[[], Any]) -> None:
        try:
            result = call()
            if inspect.isawaitable(result):
                await result
        except (IsolateExit, asyncio.CancelledError):
            pass
        except Exception as error:
            self.errors.uncaught(error)
        finally:
            self._entry_running = False
            self._ports_changed()

    def _ports_changed(self) -> None:
        if threading.current_thread() is not self._loop_thread:
            self.loop.call_soon_threadsafe(self._ports_changed)
        elif self.state == RUNNING and not self._entry_running and not self.ports.keeps_alive:
            self.begin_exit()

    def begin_exit(self, final: tuple[SendPort[Any], Any] | None = None) -> None:
        """Stop taking events; deliver what was sent (``final`` last); then end (on the loop)."""
        if self.state != RUNNING:
            return
        self.state = ENDING
        if final is not None:
            self.sender.send(*final)
        self.receiver.stop()
        entry = self._entry
        if entry is not None and not entry.done() and entry is not asyncio.current_task():
            entry.cancel()
        self.link.begin_ending()
        self.loop.create_task(self._finish_exit())

    def acknowledged(self) -> None:
        """The driver acknowledged batches (from the poll thread or the loop)."""
        self.loop.call_soon_threadsafe(self._acknowledged.set)

    async def _finish_exit(self) -> None:
        try:
            deadline = self.loop.time() + CONFIRM_SECONDS
            await self.sender.drain()
            # Spawns asked for and not started yet read their messages from objects we own.
            await self.context.spawns_done(deadline - self.loop.time())
            # What waits for the driver must be acknowledged before the actor ends
            # (large messages live in objects we own). Bounded, should it be gone.
            while not self.link.drained() and self.loop.time() < deadline:
                self._acknowledged.clear()
                try:
                    await asyncio.wait_for(self._acknowledged.wait(), deadline - self.loop.time())
                except TimeoutError:
                    break
        finally:
            self.state = ENDED
            self.link.end()
            self.context.close_channels()
            if not self.exit_future.done():
                self.exit_future.set_result(None)

    async def deliver_from_main(
        self, sender: str, seq: int, items: list[Item], ack: int, resend_from: int | None
    ) -> LinkAnswer | None:
        """A batch from the main isolate; the reply carries what the handlers answered.

        The handlers these messages wake run before the reply leaves, and
        what they send the main isolate meanwhile rides in the reply: a
        request and its answer cost one Ray call, as a raw actor method does.
        """
        self.link.acknowledge(ack, resend_from)
        self.link.begin_collecting()
        try:
            await self.receiver.open_and_accept(sender, seq, items)
            await asyncio.sleep(0)  # the handlers woken by these messages run now
        finally:
            answer = self.link.end_collecting()
        return answer

    # The runtime -------------------------------------------------------------------------

    def exit(self, port: SendPort[Any] | None, message: Any) -> NoReturn:
        final = None
        if port is not None:
            final = (port, encode(message, "Isolate.exit()"))
        self.begin_exit(final)
        raise IsolateExit()

    def spawned(self, isolate: Isolate) -> None:
        pass

    def spawn_leased(self, request: SpawnRequest) -> concurrent.futures.Future[Isolate] | None:
        return None  # only the main isolate holds warm hosts

    def status(self) -> dict[str, Any]:
        """This isolate's state and figures, and the pools it runs (any thread)."""
        state = PAUSED if self.state == RUNNING and self.receiver.paused else self.state
        return {
            "state": state,
            **isolate_figures(self.ports, self.receiver, self.sender),
            "pools": live_pools(),
            "workers": live_workers(),
        }

    def close(self) -> None:
        pass

    def unhandled(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's exception handler: a task's error nobody awaited is uncaught here."""
        error = context.get("exception")
        if isinstance(error, Exception):
            self.errors.uncaught(error)
        elif not isinstance(error, IsolateExit | asyncio.CancelledError):
            loop.default_exception_handler(context)


def _entry_call(request: SpawnRequest, message: Any) -> Callable[[], Any]:
    """The entry point, bound to its arguments; raises what prevents that."""
    if request.entry is not None:
        entry = pickle.loads(request.entry)
        return lambda: entry(message)
    uri = request.uri
    assert uri is not None
    if uri.endswith(".py"):
        path = Path(uri)
        spec = importlib.util.spec_from_file_location(f"__isolate_main_{path.stem}__", path)
        if spec is None or spec.loader is None or not path.is_file():
            raise FileNotFoundError(f"no Python file at {uri}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        name = "main"
    else:
        module_name, _, name = uri.partition(":")
        module = importlib.import_module(module_name)
        name = name or "main"
    main = getattr(module, name, None)
    if main is None:
        raise AttributeError(f"{uri} has no function {name!r}")
    if not callable(main):
        raise TypeError(f"{uri}: {name} is not callable")
    arity = _positional_arity(main)
    arguments = [request.args or [], message][: min(arity, 2)]
    return lambda: main(*arguments)


def _positional_arity(function: Callable[..., Any]) -> int:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 2
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return 2
    return len(positional)


@ray.remote(concurrency_groups={"control": 1, "poll": 1})
class IsolateHost:
    """The Ray actor behind one spawned isolate.

    Every method may be called again after a failed call (``_rpc``): each is
    idempotent.
    """

    def __init__(self, debug_name: str | None, isolate_id: str, supervisor: Any) -> None:
        self._debug_name = debug_name
        self._isolate_id = isolate_id
        self._supervisor = supervisor
        self._runtime: HostRuntime | None = None
        self._has_runtime = asyncio.Event()  # set by start: a leased host is watched before
        self._where: dict[str, Any] | None = None
        # Put together by warm, before any spawn, as the supervisor's ``Setup`` says:
        self._prepared: tuple[Setup, HostRuntime] | None = None
        self._controls: Inbox[Control] = Inbox(self._run_controls)
        self._early_controls: list[Control] = []
        # The link exists from the start: a pooled host is polled before it is spawned.
        self._link = HostLink(self._request_poll, self._acknowledged)

    def __repr__(self) -> str:
        return self._debug_name or self._isolate_id

    @ray.method(concurrency_group="control")  # type: ignore[untyped-decorator]
    def status(self) -> dict[str, Any]:
        """For ``rayisolates status``: who and where this isolate is, and its figures;
        served on the control thread, so a busy isolate answers too."""
        figures = {"state": "starting"} if self._runtime is None else self._runtime.status()
        return {
            "isolate_id": self._isolate_id,
            "debug_name": self._debug_name,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            **figures,
        }

    def _request_poll(self) -> None:
        if self._runtime is not None:
            self._runtime.request_poll()

    def _acknowledged(self) -> None:
        if self._runtime is not None:
            self._runtime.acknowledged()

    async def start(self, request: SpawnRequest, setup: Setup) -> dict[str, Any]:
        """Load the entry point and get it ready; report where the isolate runs.

        ``setup``: its main isolate, capabilities and direct-channel reach (``direct``
        ``None``: every message over Ray); the isolate ``warm`` put together if it was
        for this ``setup``.
        """
        if self._where is not None:  # a repeated call
            return self._where
        if request.debug_name is not None:  # a host from the pool is named only now
            self._debug_name = request.debug_name
        runtime = self._assembled(setup)
        runtime.spawned_as(self._debug_name, request.errors_are_fatal)
        if request.on_error is not None:
            runtime.errors.listeners.add(request.on_error)
        runtime.loop.set_exception_handler(runtime.unhandled)
        install(runtime.context)
        self._runtime = runtime
        self._has_runtime.set()
        try:
            ((_, message),) = await decode([(CONTROL_PORT, *request.message)])
            call = _entry_call(request, message)
        except Exception as error:
            what = request.uri or "its entry point"
            raise IsolateSpawnException(
                f"{self!r} could not load {what}: {type(error).__name__}: {error}"
            ) from error
        runtime.prepare(call, request.paused)
        early, self._early_controls = self._early_controls, []
        for record in early:
            runtime.apply_control(record)
        self._where = {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}
        return self._where

    async def warm(self, modules: list[str] | None = None, setup: Setup | None = None) -> None:
        """For a pooled host: connect to the supervisor now rather than at first use, and
        import the modules recent entry points came from (a spawn then costs no import:
        80 ms for the bench's entry module here). A module that fails to import is left
        for the spawn that needs it to report. With ``setup`` (from the supervisor, once):
        put the isolate together now, as it says (its spawn then uses it: ``start``)."""
        await self._supervisor.__ray_ready__.remote()
        if setup is not None and self._prepared is None and self._runtime is None:
            start_exporting()  # the process's metrics thread: not on the spawn's way either
            self._prepared = (setup, self._new_runtime(setup))
        for name in modules or ():
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    def _assembled(self, setup: Setup) -> HostRuntime:
        """The runtime ``warm`` put together, if for this ``setup``; otherwise a new one."""
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            if prepared[0] == setup:
                return prepared[1]
            prepared[1].context.close_channels()  # another setup: not this isolate's
        return self._new_runtime(setup)

    def _new_runtime(self, setup: Setup) -> HostRuntime:
        return HostRuntime(
            self._isolate_id,
            ray.get_runtime_context().current_actor,
            asyncio.get_running_loop(),
            self._supervisor,
            setup.main_id,
            self._link,
            setup.pause,
            setup.terminate,
            None if setup.direct is None else direct_here(setup.direct),
        )

    @ray.method(concurrency_group="control")  # type: ignore[untyped-decorator]
    async def release(self) -> None:
        """Run the entry point (after ``start`` has answered the spawner).

        Served on the control thread, and the entry started on the isolate's
        loop from there: an entry point that blocks that loop at once must
        not hold back this call's own completion, which (seen here) kept Ray
        from running the driver's polls, so a busy isolate on another node
        could never get a message out.
        """
        assert self._runtime is not None
        self._runtime.loop.call_soon_threadsafe(self._runtime.release)

    async def deliver(self, sender: str, seq: int, items: list[Item]) -> None:
        """A batch of messages for this isolate's ports; returns once they are in order."""
        assert self._runtime is not None
        await self._runtime.receiver.open_and_accept(sender, seq, items)

    async def deliver_from_main(
        self, sender: str, seq: int, items: list[Item], ack: int, resend_from: int | None
    ) -> LinkAnswer | None:
        """A batch from the main isolate; see :meth:`HostRuntime.deliver_from_main`."""
        assert self._runtime is not None
        return await self._runtime.deliver_from_main(sender, seq, items, ack, resend_from)

    @ray.method(concurrency_group="control")  # type: ignore[untyped-decorator]
    def direct_address(self) -> Address | None:
        """Where this isolate listens for other nodes (``None``: nowhere, or not yet)."""
        endpoint = None if self._runtime is None else self._runtime.context.endpoint
        return None if endpoint is None else endpoint.address

    @ray.method(concurrency_group="poll")  # type: ignore[untyped-decorator]
    def poll(self, ack: int, resend_from: int | None) -> LinkAnswer:
        """The driver's long poll for what this isolate sends the main isolate."""
        return self._link.poll(ack, resend_from)

    async def lifetime(self) -> None:
        """Returns once the isolate has ended and everything it sent is delivered (waits for
        :meth:`start` first: the supervisor watches a leased host from its lease on)."""
        await self._has_runtime.wait()
        assert self._runtime is not None
        await asyncio.shield(self._runtime.exit_future)

    @ray.method(concurrency_group="control")  # type: ignore[untyped-decorator]
    async def control(
        self, destination: str, sender: str, seq: int, records: list[Control]
    ) -> None:
        """Control records, in order per sender; they act while the isolate is busy."""
        self._controls.receive(sender, seq, records)

    def _run_controls(self, records: list[Control]) -> None:
        if self._runtime is None:
            self._early_controls.extend(records)
            return
        for record in records:
            self._runtime.apply_control(record)
