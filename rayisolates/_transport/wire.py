"""The wire protocol: every id, shape and record that crosses between processes.

Ids
    ``main-<hex>`` the main isolate (a driver), ``isolate-<hex>`` a spawned
    isolate (a host actor), ``worker-<hex>`` any other Ray worker that sends
    (an ``Isolate.run`` computation). A sender id names one sequence space
    per destination.

Messages
    An :data:`Item` is one encoded message for one port: ``(port_id, kind,
    payload, refs)`` (kinds in ``_codec``). A :data:`Batch` is ``(seq,
    items)``: batch ``seq`` of one sender to one destination. Senders number
    their batches 0, 1, 2, ... per destination; receivers put them back in
    order and drop what they have seen (``_inbox``), so a batch may be sent
    again after a failed call and still arrive once.

Control records
    Small frozen records, one per control action. :data:`RUNS_ON` says where
    each one acts. Those that act between events (``LOOP``) travel as
    messages to the destination's control port (``CONTROL_PORT``), in the
    sender's sequence of port messages to it, so a message sent after a
    pause is held. The others travel in a sequence of their own per sender
    and destination: exit-listener changes and kills of a spawned isolate
    all go to the supervisor (which forwards kills), so that from one sender
    they act in the order sent: a listener removed before a kill stays
    silent.

The link to the main isolate
    :class:`LinkAnswer` is what a spawned isolate hands the driver in answer
    to its poll or in the reply to its deliver (see ``_mainlink``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._capability import Capability

if TYPE_CHECKING:
    from .._sendport import SendPort

__all__ = [
    "CONTROL_PORT",
    "LAST_ANSWER",
    "LOOP",
    "MAIN",
    "RUNS_ON",
    "SUPERVISOR",
    "SUPERVISOR_NAMESPACE",
    "AddErrorListener",
    "AddExitListener",
    "Batch",
    "Control",
    "Ended",
    "Item",
    "Kill",
    "KillNow",
    "Lease",
    "LinkAnswer",
    "Pause",
    "Ping",
    "PollMe",
    "RemoveErrorListener",
    "RemoveExitListener",
    "Resume",
    "SetErrorsFatal",
    "Setup",
    "SpawnRequest",
    "Started",
    "StatusAsked",
    "control_sender",
    "direct_sender",
    "is_main",
    "new_id",
    "runs_on",
    "sender_isolate",
    "supervisor_name",
]

CONTROL_PORT = 0  # the port id of every isolate's control port
SUPERVISOR = "supervisor"  # the destination key of control records for the supervisor

# One message for one port: (port_id, kind, payload, refs); see _codec.
Item = tuple[int, int, Any, list[Any] | None]
# Batch ``seq`` of one sender to one destination.
Batch = tuple[int, list[Item]]
# A message as encoded by _codec.encode, before it has a port: (kind, payload, refs).
Encoded = tuple[int, Any, list[Any] | None]


# Sender ids. Every sender id names one sequence space per destination. An
# isolate sends as its id; besides that, a spawned isolate sends the main
# isolate directly (not over the link) as "<isolate id>/direct", and control
# records for the main isolate are relayed as "<sender>/control".


def direct_sender(isolate_id: str) -> str:
    """The sender id of what a spawned isolate sends the main isolate directly."""
    return f"{isolate_id}/direct"


def control_sender(sender: str) -> str:
    """The sender id of ``sender``'s control records for the main isolate (relayed)."""
    return f"{sender}/control"


def sender_isolate(sender: str) -> str:
    """The isolate behind a sender id (``"<isolate id>/direct"``, ``".../control"``)."""
    return sender.partition("/")[0]


# The Ray namespace of every driver's supervisor (a driver's own namespace is
# anonymous): where ``rayisolates status`` finds them.
SUPERVISOR_NAMESPACE = "rayisolates"


def supervisor_name(job_id: str) -> str:
    """The supervisor's Ray actor name: one per job, so any worker of the job finds it."""
    return f"rayisolates-supervisor-{job_id}"


def new_id(kind: str) -> str:
    """A fresh id: ``"main-..."``, ``"isolate-..."`` or ``"worker-..."``."""
    return f"{kind}-{uuid.uuid4().hex}"


def is_main(isolate_id: str) -> bool:
    """Whether ``isolate_id`` names a main isolate (a driver)."""
    return isolate_id.startswith("main-")


# Control records ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kill:
    """End isolate ``isolate_id`` once the event it handles returns (``BEFORE_NEXT_EVENT``)."""

    isolate_id: str
    capability: Capability


@dataclass(frozen=True, slots=True)
class Pause:
    """Hold port messages until ``resume`` is lifted."""

    capability: Capability
    resume: Capability


@dataclass(frozen=True, slots=True)
class Resume:
    """Lift the pause made with ``resume``."""

    capability: Capability
    resume: Capability


@dataclass(frozen=True, slots=True)
class Ping:
    """Send ``response`` (encoded) to ``port``; ``immediate`` answers even while busy."""

    port: SendPort[Any]
    response: Encoded
    immediate: bool


@dataclass(frozen=True, slots=True)
class AddErrorListener:
    """Send each uncaught error to ``port``."""

    port: SendPort[Any]


@dataclass(frozen=True, slots=True)
class RemoveErrorListener:
    """Stop sending uncaught errors to ``port``."""

    port: SendPort[Any]


@dataclass(frozen=True, slots=True)
class SetErrorsFatal:
    """Whether an uncaught error ends the isolate."""

    capability: Capability
    fatal: bool


@dataclass(frozen=True, slots=True)
class AddExitListener:
    """Send ``response`` (encoded) to ``port`` once isolate ``isolate_id`` ends."""

    isolate_id: str
    port: SendPort[Any]
    response: Encoded


@dataclass(frozen=True, slots=True)
class RemoveExitListener:
    """Forget the exit listener ``port`` of isolate ``isolate_id``."""

    isolate_id: str
    port: SendPort[Any]


@dataclass(frozen=True, slots=True)
class KillNow:
    """End isolate ``isolate_id``'s process at once (``IMMEDIATE``)."""

    isolate_id: str
    capability: Capability


@dataclass(frozen=True, slots=True)
class Started:
    """To the supervisor: the spawner started leased isolate ``isolate_id`` itself (see
    :class:`Lease`); watch it as one the supervisor started, with ``on_exit`` as its
    first exit listener."""

    isolate_id: str
    debug_name: str | None
    on_exit: SendPort[Any] | None
    module: str | None  # where its entry point came from (warm hosts import it)


@dataclass(frozen=True, slots=True)
class PollMe:
    """To the main isolate: isolate ``isolate_id`` has messages for it; poll ``route``."""

    isolate_id: str
    route: Any


@dataclass(frozen=True, slots=True)
class Ended:
    """To the main isolate: isolate ``isolate_id`` has ended; nothing it sent is still relayed.

    The supervisor relays it after everything the isolate handed it, so the
    driver can forget the isolate's direct sequence then, and not before.
    """

    isolate_id: str


@dataclass(frozen=True, slots=True)
class StatusAsked:
    """To the main isolate: ``rayisolates status`` asks for its figures and pools; the
    driver answers the supervisor's ``driver_status(request_id, ...)``."""

    request_id: str


Control = (
    Kill
    | Pause
    | Resume
    | Ping
    | AddErrorListener
    | RemoveErrorListener
    | SetErrorsFatal
    | AddExitListener
    | RemoveExitListener
    | KillNow
    | Started
    | PollMe
    | Ended
    | StatusAsked
)

# Where each control record acts.
LOOP = "the isolate's receiver, between events, in order with the sender's port messages"
CONTROL_THREAD = "the host actor's control thread, at once, even while the loop is busy"
SUPERVISOR_ACTOR = "the supervisor, which outlives every isolate"
MAIN = "the main isolate (queued for the driver by the supervisor)"
RUNS_ON: dict[type, str] = {
    Kill: LOOP,
    Pause: LOOP,
    Resume: LOOP,
    Ping: LOOP,  # or CONTROL_THREAD when ``immediate``: see runs_on()
    AddErrorListener: LOOP,
    RemoveErrorListener: LOOP,
    SetErrorsFatal: LOOP,
    AddExitListener: SUPERVISOR_ACTOR,
    RemoveExitListener: SUPERVISOR_ACTOR,
    KillNow: SUPERVISOR_ACTOR,
    Started: SUPERVISOR_ACTOR,
    PollMe: MAIN,
    Ended: MAIN,
    StatusAsked: MAIN,
}


def runs_on(record: Control) -> str:
    """Where ``record`` acts: one of the constants in :data:`RUNS_ON`."""
    if isinstance(record, Ping) and record.immediate:
        return CONTROL_THREAD
    return RUNS_ON[type(record)]


# The link to the main isolate ------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkAnswer:
    """What a spawned isolate hands the driver: batches for the main isolate.

    Attributes:
        batches: Batches not handed over before (or again, when asked to resend).
        last: Everything was acknowledged and the isolate ends: stop polling.
    """

    batches: tuple[Batch, ...] = ()
    last: bool = False


LAST_ANSWER = LinkAnswer(last=True)  # what every poll of an ended isolate gets


# Spawning -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    """Everything a new isolate needs, already encoded by the spawner.

    ``spawn_id`` makes a request idempotent: the supervisor starts one
    isolate per id however often the call is retried.
    """

    spawn_id: str
    entry: bytes | None  # cloudpickled entry point (spawn), or None (spawn_uri)
    uri: str | None  # "package.module:function" or an absolute path to a .py file
    args: list[str] | None  # spawn_uri's args
    message: Encoded
    paused: bool
    errors_are_fatal: bool
    on_exit: SendPort[Any] | None
    on_error: SendPort[Any] | None
    debug_name: str | None
    options: dict[str, Any]
    module: str | None = None  # where the entry point is found by name (warm hosts import it)


@dataclass(frozen=True, slots=True)
class Setup:
    """What an isolate is given by whoever starts it (``IsolateHost.start``): the main
    isolate's id, its capabilities and the direct-channel reach. For a warm host the
    supervisor chooses it as it starts the host (``IsolateHost.warm``), and the host puts
    the isolate together then; a ``start`` with the same ``Setup`` uses that (a spawn
    from the pool then waits for no assembly: about 2 ms of 11 here)."""

    main_id: str
    pause: Capability
    terminate: Capability
    direct: Any  # the supervisor's direct-channel reach (None: every message over Ray)


@dataclass(frozen=True, slots=True)
class Lease:
    """A warm host the supervisor set aside for the main isolate, which spawns into it
    without asking the supervisor: it calls ``host.start`` itself with the host's
    :class:`Setup`, then tells the supervisor :class:`Started` (or, if starting failed,
    ``KillNow``). The supervisor holds the isolate's record from the lease on, so exit
    listeners and kills sent by anyone meanwhile act on it."""

    isolate_id: str
    host: Any
    setup: Setup
