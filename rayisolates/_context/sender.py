"""Where an isolate's messages and control records go.

A message to one of the isolate's own ports stays in the process
(``_local``); every other goes through the outbox, over a direct channel
to an isolate on the same node (``_direct``) or over Ray. In a spawned
isolate, one to the main isolate waits for the driver (``_mainlink``),
unless the driver is on this node: then it goes directly too, through an
outbox of its own (falling back to the supervisor's relay). The switch
happens once, when the link has nothing the driver has not acknowledged,
so what went the old way has been dispatched before anything goes the new.
A control record that acts between the receiver's events (pause, resume,
kill, ping, error listeners) travels as a message to the destination's
control port, in the same sequence as the port messages sent there, so the
two act in the order sent whatever carries each. Records acting at once
(an immediate ping, on the host's control thread) or elsewhere (exit
listeners and immediate kills, on the supervisor) travel in an outbox of
their own, in order per destination. Records for the isolate itself act at
once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._transport.codec import encode
from .._transport.local import LocalChannel
from .._transport.mainlink import HostLink
from .._transport.outbox import Outbox
from .._transport.wire import LOOP, SUPERVISOR, Control, Encoded, Item, runs_on

if TYPE_CHECKING:
    from .._sendport import SendPort

__all__ = ["Sender"]


class Sender:
    """Routes what one isolate sends; thread-safe.

    Args:
        isolate_id: The sending isolate.
        outbox: Messages to other isolates, over Ray.
        controls: Control records to other isolates and the supervisor.
        supervisor: The supervisor's actor handle (looked up when first needed).
        local: Messages to the isolate's own ports (``None``: it has none).
        main: ``(main_id, link)`` in a spawned isolate: messages for the main isolate.
        to_main: ``(outbox, reachable)`` in a spawned isolate with direct
            channels: the outbox for the main isolate once it is reachable
            directly (``reachable()`` says whether it is; ``None``: not yet).
        apply_locally: Acts on a control record for the isolate itself.
    """

    def __init__(
        self,
        isolate_id: str,
        outbox: Outbox[Item],
        controls: Outbox[Control],
        supervisor: Callable[[], Any],
        local: LocalChannel | None = None,
        main: tuple[str, HostLink] | None = None,
        to_main: tuple[Outbox[Item], Callable[[], bool | None]] | None = None,
        apply_locally: Callable[[Control], None] | None = None,
    ) -> None:
        self.isolate_id = isolate_id
        self.outbox = outbox
        self.controls = controls
        self._supervisor = supervisor
        self._local = local
        self._main_id: str | None = None
        self._main_link: HostLink | None = None
        if main is not None:
            self._main_id, self._main_link = main
        self._to_main: Outbox[Item] | None = None
        self._main_reachable: Callable[[], bool | None] = lambda: False
        if to_main is not None:
            self._to_main, self._main_reachable = to_main
        self._main_lock = threading.Lock()
        self._direct_to_main = False
        self._apply_locally = apply_locally
        carriers: list[Any] = [outbox, local, self._main_link, self._to_main]
        self._carriers = [carrier for carrier in carriers if carrier is not None]

    def send(self, port: SendPort[Any], encoded: Encoded) -> None:
        """Queue one encoded message for ``port``."""
        item: Item = (port.port_id, *encoded)
        destination = port.isolate_id
        if destination == self.isolate_id and self._local is not None:
            self._local.add(item)
        elif destination == self._main_id and self._main_link is not None:
            self._send_to_main(self._main_link, destination, item)
        else:
            self.outbox.add(destination, port.route, item)

    def _send_to_main(self, link: HostLink, main_id: str, item: Item) -> None:
        with self._main_lock:
            if self._to_main is not None and not self._direct_to_main:
                reachable = self._main_reachable()
                if reachable is False:  # no direct channel to it: the link, for good
                    self._to_main = None
                elif reachable and link.drained():  # None: not yet (connecting)
                    self._direct_to_main = True
            if self._direct_to_main and self._to_main is not None:
                self._to_main.add(main_id, self._supervisor(), item)
            else:
                link.add(item)

    @property
    def sent_messages(self) -> int:
        """Messages sent since the isolate started: counted by each carrier under its own
        lock (a counter of its own would cost every send a lock more)."""
        return sum(carrier.added for carrier in self._carriers)

    def control(self, control_port: SendPort[Any], record: Control) -> None:
        """Send ``record`` to the isolate that owns ``control_port``."""
        if control_port.isolate_id == self.isolate_id and self._apply_locally is not None:
            self._apply_locally(record)
        elif runs_on(record) == LOOP:  # in order with port messages, whatever carries them
            self.send(control_port, encode(record, "a control record", store=False))
        else:
            self.controls.add(control_port.isolate_id, control_port.route, record)

    def supervisor(self) -> Any:
        """The supervisor's actor handle."""
        return self._supervisor()

    def supervise(self, record: Control) -> None:
        """Send ``record`` to the supervisor, in order with this isolate's other records."""
        self.controls.add(SUPERVISOR, self._supervisor(), record)

    def busy(self) -> bool:
        """Whether anything sent over Ray is still queued or in flight."""
        to_main = self._to_main is not None and self._to_main.busy()
        return self.outbox.busy() or self.controls.busy() or to_main

    async def drain(self) -> None:
        """Wait until everything sent over Ray so far is delivered (or undeliverable)."""
        while self.busy():
            await self.outbox.drain()
            await self.controls.drain()
            if self._to_main is not None:
                await self._to_main.drain()
