"""A spawned isolate: one async Ray actor hosting one event loop and its ports.

The actor's ``deliver`` calls run on the isolate's event loop, like Dart port
events; control calls (``control``) run on a second thread of their own, so
``ping`` and ``pause`` still act while the isolate is busy in a long
synchronous call.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import os
import pickle
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import ray

from ._capability import Capability
from ._codec import Item, encode
from ._context import CONTROL_PORT, SUPERVISOR, Context, install
from ._errors import IsolateSpawnException
from ._inbox import Inbox, Message, decode
from ._outbox import Outbox
from ._ports import SendPort

__all__ = [
    "SYNC",
    "HostContext",
    "IsolateExit",
    "IsolateHost",
    "host_options",
]

RUNNING, EXITING = "running", "exiting"
SYNC = "sync"  # a poll answer asking the driver to confirm what it has received
REPLY_WINDOW_SECONDS = 0.002  # how long a deliver may hold replies to main back
CONFIRM_SECONDS = 30.0  # how long an ending isolate waits for the driver's confirmation
_WINDOW_OPEN, _WINDOW_CLOSED = object(), object()  # between a deliver and the poll thread


class IsolateExit(BaseException):
    """Unwinds the code that called ``Isolate.exit``; the isolate is ending."""


def host_options(options: dict[str, Any]) -> dict[str, Any]:
    """Ray actor options for a host: no CPU reserved unless asked, never restarted."""
    return {
        "num_cpus": 0,
        "max_restarts": 0,
        "max_task_retries": 0,
        "max_concurrency": 10_000,
        **options,
    }


class HostContext(Context):
    """The isolate a host actor runs: lifetime, pausing, errors, exit."""

    def __init__(
        self,
        isolate_id: str,
        debug_name: str | None,
        route: Any,
        loop: asyncio.AbstractEventLoop,
        supervisor: Any,
        main_id: str,
        pause: Capability,
        terminate: Capability,
        errors_are_fatal: bool,
    ) -> None:
        super().__init__(isolate_id, route, loop)
        self.debug_name = debug_name
        self.supervisor = supervisor
        self.main_id = main_id
        # Batches for the main isolate can leave without a call of ours: in the
        # answer to the driver's poll (blocked on the poll thread until then), or
        # in the reply to the driver's deliver. The driver confirms them later.
        self._poll_waiting = False
        self._poll_answers: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._poll_lock = threading.Lock()
        # seq -> whether confirming it also acknowledges it (batches in a reply
        # are acknowledged when handed over; confirming them only lets us end)
        self._unconfirmed: dict[int, bool] = {}
        self._confirmed = asyncio.Event()
        self._collecting = False
        self.outbox.set_handoff(main_id, self._hand_to_poll)
        self.pause_capability = pause
        self.terminate_capability = terminate
        self.errors_are_fatal = errors_are_fatal
        self.exit_future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._state = RUNNING
        self._entry: asyncio.Task[None] | None = None
        self._entry_running = True  # from creation: the entry point is about to run
        self._start: Callable[[], None] | None = None
        self._released = False
        self._forwarded: list[Any] = []  # exit-listener changes sent to the supervisor

    # Lifetime -------------------------------------------------------------

    def prepare(self, call: Callable[[], Any], paused: bool) -> None:
        """Get the entry point ready; it runs once released (and not paused)."""

        def start() -> None:
            self._entry = self.loop.create_task(self._run_entry(call))

        self._start = start
        if paused:
            self.pause(self.pause_capability)

    def release(self) -> None:
        """Let the entry point run, now or on resume.

        Separate from :meth:`prepare` (which ``IsolateHost.start`` calls): an
        entry point that blocks the loop at once must not hold back the reply
        that tells the spawner the isolate started.
        """
        self._released = True
        if not self._pauses and self._state == RUNNING:
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
            self.uncaught(error)
        finally:
            self._entry_running = False
            self.ports_changed()

    def ports_changed(self) -> None:
        if self._state == RUNNING and not self._entry_running and not self.keeps_alive:
            self.begin_exit({"reason": "finished"})

    def begin_exit(
        self,
        info: dict[str, Any],
        final: tuple[SendPort[Any], tuple[int, Any, Any]] | None = None,
    ) -> None:
        """Stop taking events; deliver what was sent (``final`` last); then end."""
        if self._state != RUNNING:
            return
        self._state = EXITING
        if final is not None:
            self.send_item(*final)
        entry = self._entry
        if entry is not None and not entry.done() and entry is not asyncio.current_task():
            entry.cancel()
        self.loop.create_task(self._finish_exit(info))

    def forward_to_supervisor(self, action: str, args: tuple[Any, ...]) -> None:
        """Pass an exit-listener change on; it is applied before the isolate's end is."""
        self._forwarded.append(self.control(self.supervisor, SUPERVISOR, action, *args))

    async def _finish_exit(self, info: dict[str, Any]) -> None:
        try:
            await self.outbox.drain()
            # Batches handed over without a call of ours: the driver renews its poll
            # when asked (SYNC), confirming them. Bounded, should the driver be gone.
            deadline = self.loop.time() + CONFIRM_SECONDS
            while self._unconfirmed and self.loop.time() < deadline:
                self._confirmed.clear()
                self._answer_poll(SYNC)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._confirmed.wait(), deadline - self.loop.time())
            forwarded, self._forwarded = self._forwarded, []
            await asyncio.gather(*forwarded, return_exceptions=True)
        finally:
            self._answer_poll(None)
            if not self.exit_future.done():
                self.exit_future.set_result(info)

    # The main isolate's poll and replies ------------------------------------

    def confirm_main(self, received: int) -> None:
        """The driver has received our batches up to ``received``: they are delivered."""
        with self._poll_lock:
            confirmed = [seq for seq in self._unconfirmed if seq <= received]
            acknowledge = [self._unconfirmed.pop(seq) for seq in confirmed]
        for needed in acknowledge:
            if needed:
                self.outbox.acknowledge(self.main_id)
        if confirmed:
            self.loop.call_soon_threadsafe(self._confirmed.set)

    def poll_main(self, received: int) -> Any:
        """Block until the next batch for the main isolate, and return it.

        Runs on the host's poll thread and blocks it (not the isolate's
        loop): a batch handed over is returned at once, even while the
        isolate's own loop is busy in a blocking call. While a deliver from
        the main isolate holds replies back to return them itself, this
        thread watches: if the loop does not get back to that deliver within
        ``REPLY_WINDOW_SECONDS`` (a handler blocked it), it takes what was
        held and returns it here. Returns ``SYNC`` when the isolate is
        ending and waits for the driver to confirm, ``None`` once it has
        ended.
        """
        self.confirm_main(received)
        with self._poll_lock:
            if self._state != RUNNING:
                if self._unconfirmed:
                    return SYNC
                if not self.outbox.busy_towards(self.main_id):
                    return None
            self._poll_waiting = True
        self.outbox.offer(self.main_id)
        while True:
            answer = self._poll_answers.get()
            if answer is _WINDOW_OPEN:
                try:
                    answer = self._poll_answers.get(timeout=REPLY_WINDOW_SECONDS)
                except queue.Empty:
                    answer = self._take_held_replies()
            if answer is not _WINDOW_CLOSED:
                return answer

    def _take_held_replies(self) -> Any:
        """On the poll thread: the loop is stuck; send what a deliver held back."""
        with self._poll_lock:
            if not self._collecting:
                return _WINDOW_CLOSED
            self._collecting = False
            batch = self.outbox.release(self.main_id)
            if batch is None:
                return _WINDOW_CLOSED  # nothing held: go on waiting as a plain poll
            self._poll_waiting = False
            seq, items = batch
            self._unconfirmed[seq] = True
        return (self.isolate_id, seq, items)

    async def deliver_from_main(
        self, sender: str, seq: int, items: list[Item], received: int
    ) -> list[tuple[str, int, list[Item]]] | None:
        """Take a batch from the main isolate; return what the handlers answered at once.

        The handlers these messages wake run before the reply leaves, and
        what they send the main isolate meanwhile is held and rides in the
        reply as one batch: a request and its answer cost one Ray call, as a
        raw actor method does. Only while the driver's poll waits, which
        then watches that a handler blocking the loop cannot hold the
        answer back.
        """
        self.confirm_main(received)
        with self._poll_lock:
            collect = self._poll_waiting and not self._collecting
            if collect:
                self._collecting = True
                self.outbox.hold(self.main_id)
        if not collect:
            await self.deliver(sender, seq, items)
            return None
        self._poll_answers.put(_WINDOW_OPEN)
        try:
            await self.deliver(sender, seq, items)
            await asyncio.sleep(0)  # the handlers woken by these messages run now
        finally:
            with self._poll_lock:
                held = self._collecting  # False if the poll thread took over
                self._collecting = False
                batch = self.outbox.release(self.main_id) if held else None
                if batch is not None:
                    self._unconfirmed[batch[0]] = False
            if held:
                self._poll_answers.put(_WINDOW_CLOSED)
        if batch is None:
            self.outbox.offer(self.main_id)
            return None
        self.outbox.acknowledge(self.main_id)  # in the reply: the window is free again
        self.outbox.offer(self.main_id)
        return [(self.isolate_id, *batch)]

    def _answer_poll(self, answer: Any, seq: int | None = None) -> bool:
        with self._poll_lock:
            if not self._poll_waiting:
                return False
            self._poll_waiting = False
            if seq is not None:
                self._unconfirmed[seq] = True
        self._poll_answers.put(answer)
        return True

    def _hand_to_poll(self, sender: str, seq: int, items: list[Item]) -> bool:
        return self._answer_poll((sender, seq, items), seq)

    def kill(self) -> None:
        self.begin_exit({"reason": "killed"})

    def end_by_error(self, report: list[str]) -> None:
        self.begin_exit({"reason": "error", "error": report})

    def exit(self, port: SendPort[Any] | None, message: Any) -> NoReturn:
        final = None
        if port is not None:
            final = (port, encode(message, "Isolate.exit()"))
        self.begin_exit({"reason": "exit"}, final)
        raise IsolateExit()

    # Events ---------------------------------------------------------------

    def dispatch(self, messages: list[Message]) -> None:
        if self._state == RUNNING:
            super().dispatch(messages)

    def pause(self, capability: Capability) -> None:
        if self._state == RUNNING:
            super().pause(capability)

    def resume(self, capability: Capability) -> None:
        super().resume(capability)
        if not self._pauses and self._released:
            self._run_start()

    def guarded(self, callback: Callable[..., object], *args: Any) -> None:
        try:
            callback(*args)
        except IsolateExit:
            pass
        except Exception as error:
            self.uncaught(error)

    def unhandled(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's exception handler: a task's error nobody awaited is uncaught here."""
        error = context.get("exception")
        if isinstance(error, Exception):
            self.uncaught(error)
        elif not isinstance(error, IsolateExit | asyncio.CancelledError):
            loop.default_exception_handler(context)


def _entry_call(request: Any, message: Any) -> Callable[[], Any]:
    """The entry point, bound to its arguments; raises what prevents that."""
    if request.entry is not None:
        entry = pickle.loads(request.entry)
        return lambda: entry(message)
    uri: str = request.uri
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
    """The Ray actor behind one spawned isolate."""

    def __init__(self, debug_name: str | None, isolate_id: str, supervisor: Any) -> None:
        self._debug_name = debug_name
        self._isolate_id = isolate_id
        self._supervisor = supervisor
        self._context: HostContext | None = None
        self._controls = Inbox(self._run_controls)
        self._control_outbox: Outbox | None = None

    def __repr__(self) -> str:
        return self._debug_name or self._isolate_id

    async def start(
        self, request: Any, main_id: str, pause: Capability, terminate: Capability
    ) -> dict[str, Any]:
        """Load the entry point and run it (unless paused); report where the isolate runs."""
        if request.debug_name is not None:  # a host from the pool is named only now
            self._debug_name = request.debug_name
        context = HostContext(
            self._isolate_id,
            self._debug_name,
            ray.get_runtime_context().current_actor,
            asyncio.get_running_loop(),
            self._supervisor,
            main_id,
            pause,
            terminate,
            request.errors_are_fatal,
        )
        if request.on_error is not None:
            context.error_listeners.add(request.on_error)
        context.loop.set_exception_handler(context.unhandled)
        install(context)
        self._context = context
        try:
            ((_, message),) = await decode([(CONTROL_PORT, *request.message)])
            call = _entry_call(request, message)
        except Exception as error:
            what = request.uri or "its entry point"
            raise IsolateSpawnException(
                f"{self!r} could not load {what}: {type(error).__name__}: {error}"
            ) from error
        context.prepare(call, request.paused)
        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

    async def warm(self) -> None:
        """For a pooled host: connect to the supervisor now rather than at first use."""
        await self._supervisor.__ray_ready__.remote()

    async def release(self) -> None:
        """Run the entry point (after ``start`` has answered the spawner)."""
        assert self._context is not None
        self._context.release()

    async def deliver(
        self, sender: str, seq: int, items: list[Item], received: int | None = None
    ) -> list[tuple[str, int, list[Item]]] | None:
        """A batch of messages for this isolate's ports.

        ``received`` comes from the main isolate only (how far it has
        received our batches); then the reply may carry batches for it.
        """
        assert self._context is not None
        if received is None:
            await self._context.deliver(sender, seq, items)
            return None
        return await self._context.deliver_from_main(sender, seq, items, received)

    @ray.method(concurrency_group="poll")  # type: ignore[untyped-decorator]
    def poll(self, received: int) -> Any:
        """The main isolate's long poll for what this isolate sends it (blocks its thread)."""
        assert self._context is not None
        return self._context.poll_main(received)

    async def lifetime(self) -> dict[str, Any]:
        """Returns how the isolate ended, once everything it sent is delivered."""
        assert self._context is not None
        return await asyncio.shield(self._context.exit_future)

    @ray.method(concurrency_group="control")  # type: ignore[untyped-decorator]
    async def control(self, sender: str, seq: int, action: str, args: tuple[Any, ...]) -> None:
        """A control message (kill, pause, resume, ping, error listeners, errors fatal).

        Runs on the control thread, so it acts while the isolate is busy;
        control messages from one sender act in the order sent.
        """
        self._controls.receive(sender, seq, [(action, args)])

    def _run_controls(self, controls: list[tuple[Any, Any]]) -> None:
        context = self._context
        assert context is not None
        for action, args in controls:
            if action in ("add_exit_listener", "remove_exit_listener"):
                context.forward_to_supervisor(action, args)
            elif action == "ping" and args[2]:  # immediate: answer from this thread
                port, response, _ = args
                self._control_sender().add(port.isolate_id, port.route, (port.port_id, *response))
            else:
                context.loop.call_soon_threadsafe(context.apply_control, action, args)

    def _control_sender(self) -> Outbox:
        """Replies sent from the control thread: a sender of their own, in their own order."""
        if self._control_outbox is None:
            self._control_outbox = Outbox(f"{self._isolate_id}/control", asyncio.get_running_loop())
        return self._control_outbox
