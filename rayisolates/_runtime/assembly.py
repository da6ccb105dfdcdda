"""How a process becomes an isolate: the one place an isolate's pieces are put together.

Three kinds of process are isolates here. They are built from the same
pieces (``_context``: ports, receiver, sender, control actions, errors;
``_transport``: outboxes, the local channel, direct channels) and differ
only in what :class:`Kind` says, which is this table:

=================== ===================== ===================== ===================
..                  main isolate (driver) spawned isolate       Ray worker
                                          (host actor)          (``Isolate.run``)
=================== ===================== ===================== ===================
its loop            a background loop     the actor's loop      a background loop
callbacks run on    the running loop, or  its loop              the running loop,
                    its loop                                    or its loop
others reach it by  the supervisor (a     its actor             nothing: it only
                    relay)                                      sends
its control records its control port,     its control port,     none
                    in order with port    in order with port
                    messages, and the     messages, and the
                    supervisor's relay    control thread
                                          (immediate pings)
kill                interrupts the main   ends the isolate      -
                    thread
an uncaught error   is reported           is reported; if fatal is reported
                                          ends the isolate
a batch to an       ``deliver_from_main`` ``deliver``           ``deliver``
isolate over Ray    (its reply carries
                    answers)
direct channels     read on the channel's read on its loop      none
                    thread
to the main isolate its own port          the link, or directly the supervisor's
                                          on the driver's node  relay
its figures         exported as metrics   exported as metrics   none
=================== ===================== ===================== ===================

The runtimes (``main``, ``host``, ``worker``) each describe themselves as a
:class:`Kind` and call :func:`assemble`; what they add is their own life
(the driver's links and relay pump, a host's entry point and exit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from .._capability import Capability
from .._context.context import Context, Runtime
from .._context.controls import ControlActions
from .._context.figures import isolate_figures
from .._context.metrics import MetricsExport
from .._context.porttable import PortTable
from .._context.receiver import Receiver
from .._context.sender import Sender
from .._context.uncaught import UncaughtErrors
from .._transport.direct import Endpoint, Reach, direct_first, direct_folder
from .._transport.local import LocalChannel
from .._transport.mainlink import HostLink
from .._transport.outbox import Outbox, Transmit
from .._transport.rpc import fire, transmit_batch, transmit_controls
from .._transport.wire import Control, Item, direct_sender

__all__ = ["Direct", "Kind", "Receiving", "assemble", "direct_here", "export_metrics"]


def _nothing() -> None:
    pass


@dataclass(frozen=True, slots=True)
class Receiving:
    """What an isolate that receives does that only it can do.

    Attributes:
        pause: Authorizes pausing and resuming it.
        terminate: Authorizes killing it and making its errors fatal.
        on_control: Acts on a control record addressed to it: one of its own,
            or one that arrived on its control port, in its sender's sequence
            (under the receiver's lock: see ``Receiver``).
        kill: Ends it (``Isolate.BEFORE_NEXT_EVENT``).
        errors_are_fatal: Whether an uncaught error ends it, at first.
        fatal_error: Ends it after a fatal uncaught error.
        ports_changed: Called after a port closes or stops keeping it alive.
        resumed: Called when its last pause is lifted.
    """

    pause: Capability
    terminate: Capability
    on_control: Callable[[Control], None]
    kill: Callable[[], None]
    errors_are_fatal: bool = False
    fatal_error: Callable[[], None] = _nothing
    ports_changed: Callable[[], None] = _nothing
    resumed: Callable[[], None] = _nothing


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of isolate process: the differences in the module's table.

    Attributes:
        isolate_id: Its id (``main-``, ``isolate-`` or ``worker-``).
        debug_name: Its name in reports and metrics (a warm host's is set on its
            context at its spawn).
        route: What other isolates deliver to (``None``: it cannot receive).
        loop: Its event loop.
        runs_on_own_loop: Callbacks registered from another running loop
            still run on ``loop`` (a spawned isolate has one loop only).
        supervisor: Finds the supervisor's actor handle.
        over_ray: Delivers one batch to another isolate over Ray.
        direct: What its direct channels need (``None``: it has none).
        direct_on_loop: Direct batches are read on ``loop`` rather than on
            the channel's own thread.
        on_direct_batch: Takes a batch read from a direct channel (``None``:
            the receiver's ``accept``).
        main_link: A spawned isolate's way to the main isolate:
            ``(main_id, link)``.
        receiving: What it does as a receiver (``None``: it only sends).
        metrics: Whether its figures are exported as Ray metrics from the start
            (a spawned isolate's are from its spawn on: :func:`export_metrics`).
    """

    isolate_id: str
    debug_name: str | None
    route: Any
    loop: asyncio.AbstractEventLoop
    runs_on_own_loop: bool
    supervisor: Callable[[], Any]
    over_ray: Transmit = transmit_batch
    direct: Direct | None = None
    direct_on_loop: bool = False
    on_direct_batch: Callable[[str, int, list[Item]], None] | None = None
    main_link: tuple[str, HostLink] | None = None
    receiving: Receiving | None = None
    metrics: bool = False


def assemble(kind: Kind, runtime: Runtime) -> Context:
    """Put one isolate's pieces together as ``kind`` says; ``runtime`` is its life."""
    receiving = kind.receiving
    sender: Sender | None = None
    context: Context | None = None

    def name() -> str:  # read when reported: a warm host is named at its spawn
        return (context and context.debug_name) or kind.isolate_id

    def send(port: Any, encoded: Any) -> None:
        assert sender is not None
        sender.send(port, encoded)

    ports = receiver = actions = endpoint = local = None
    if receiving is None:
        errors = UncaughtErrors(name, send)
    else:
        ports = PortTable(changed=receiving.ports_changed)
        fatal_error = receiving.fatal_error
        errors = UncaughtErrors(
            name,
            send,
            fatal=receiving.errors_are_fatal,
            end=lambda report: fatal_error(),
        )
        receiver = Receiver(
            ports,
            kind.loop,
            errors.uncaught,
            receiving.on_control,
        )
        local = LocalChannel(kind.isolate_id, kind.loop, receiver.accept)
        if kind.direct is not None:
            endpoint = _endpoint(
                kind.direct,
                kind.isolate_id,
                kind.on_direct_batch or receiver.accept,
                loop=kind.loop if kind.direct_on_loop else None,
            )
    to_isolates = kind.over_ray if endpoint is None else direct_first(endpoint, kind.over_ray)
    to_main: tuple[Outbox[Item], Callable[[], bool | None]] | None = None
    if endpoint is not None and kind.main_link is not None:
        main_id = kind.main_link[0]
        reachable, supervisor = endpoint.reachable, kind.supervisor
        to_main = (
            Outbox(direct_sender(kind.isolate_id), direct_first(endpoint, transmit_batch)),
            lambda: reachable(main_id, supervisor()),  # the main isolate's route
        )
    sender = Sender(
        kind.isolate_id,
        Outbox(kind.isolate_id, to_isolates),
        Outbox(kind.isolate_id, transmit_controls),
        supervisor=kind.supervisor,
        local=local,
        main=kind.main_link,
        to_main=to_main,
        apply_locally=None if receiving is None else receiving.on_control,
    )
    if receiving is not None:
        assert receiver is not None
        actions = ControlActions(
            pause_capability=receiving.pause,
            terminate_capability=receiving.terminate,
            receiver=receiver,
            errors=errors,
            send=sender.send,
            kill=receiving.kill,
            resumed=receiving.resumed,
        )
    context = Context(
        kind.isolate_id,
        kind.route,
        kind.loop,
        sender,
        errors,
        runtime,
        debug_name=kind.debug_name,
        ports=ports,
        receiver=receiver,
        actions=actions,
        endpoint=endpoint,
        runs_on_own_loop=kind.runs_on_own_loop,
    )
    if kind.metrics:
        export_metrics(context)
    return context


def export_metrics(context: Context) -> None:
    """Export the figures of ``context`` (an isolate that receives) as Ray metrics from now
    on, under its debug name (a warm host's from its spawn on, once it has its name)."""
    ports, receiver, sender = context.ports, context.receiver, context.sender
    assert ports is not None and receiver is not None, "only an isolate that receives"
    context.metrics = MetricsExport(
        lambda: isolate_figures(ports, receiver, sender),
        context.debug_name or context.isolate_id,
        context.isolate_id,
    )


@dataclass(frozen=True, slots=True)
class Direct:
    """Where an isolate's direct channels listen (see ``_transport.direct``).

    Attributes:
        reach: The driver's secret, and whether channels join nodes.
        folder: Its node's folder of Unix sockets (``None``: none).
        node: Its Ray node id.
        host: The address to listen on for other nodes (``None``: none).
    """

    reach: Reach
    folder: Path | None
    node: str
    host: str | None


def direct_here(reach: Reach) -> Direct:
    """Direct channels for this process, on the node and address Ray gives it."""
    node = ray.get_runtime_context().get_node_id()
    host = ray.util.get_node_ip_address() if reach.across_nodes else None
    return Direct(reach, direct_folder(node), node, host)


def _endpoint(
    direct: Direct,
    isolate_id: str,
    on_batch: Callable[[str, int, list[Item]], None],
    loop: asyncio.AbstractEventLoop | None,
) -> Endpoint:
    """An isolate's end of its direct channels: its node's Unix sockets and, across nodes,
    TCP (peers found by asking their actors)."""
    return Endpoint(
        direct.folder,
        isolate_id,
        on_batch,
        loop=loop,
        secret=direct.reach.secret,
        node=direct.node,
        host=direct.host,
        locate=_locate if direct.host is not None else None,
    )


def _locate(destination: str, route: Any) -> Any:
    """Where ``destination`` listens for other nodes: its actor says (the main isolate's
    route, the supervisor, says for it)."""
    return fire(route.direct_address)
