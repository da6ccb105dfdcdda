"""``SendPort``: the address of a receive port, valid in any isolate on any node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ._context.context import current

__all__ = ["SendPort"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, eq=False)
class SendPort(Generic[T]):
    """Sends messages to the :class:`ReceivePort` it was made from, in any isolate.

    A ``SendPort`` is an address: it can travel inside messages to any isolate
    on any node and keeps working there; ``==`` and ``hash`` identify the
    port, also after travelling.
    """

    isolate_id: str
    port_id: int
    route: Any = field(repr=False)  # what delivers to the owning isolate (a Ray actor handle)

    __module__ = "rayisolates"

    def send(self, message: T) -> None:
        """Send ``message`` to the port; never blocks, fire and forget.

        The message is copied now (pickled; large ones go to Ray's object
        store), so later changes by the sender are not seen by the receiver.
        Messages from one isolate to one port arrive in the order sent,
        exactly once. Sending to a closed port, or to an isolate that has
        ended, silently drops the message, as in Dart.

        Raises:
            TypeError: ``message`` holds something that cannot be sent (a
                lock, socket, open file, generator, ``ReceivePort``, ...);
                the error names it. Nothing is delivered and the port keeps
                working.
        """
        current().send(self, message)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SendPort):
            return NotImplemented
        return (self.isolate_id, self.port_id) == (other.isolate_id, other.port_id)

    def __hash__(self) -> int:
        return hash((self.isolate_id, self.port_id))

    def __reduce__(self) -> tuple[type[SendPort[Any]], tuple[str, int, Any]]:
        return (SendPort, (self.isolate_id, self.port_id, self.route))
