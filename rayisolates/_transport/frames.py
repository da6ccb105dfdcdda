"""One direct channel's socket: whole frames in, frames queued out and written as it can.

A frame is a 4-byte length, then a pickle (``handles.dumps``). Nothing here
waits on the socket: it is non-blocking, what it does not take at once is
queued and written later by whoever watches it (``direct.Endpoint``), so two
processes writing large batches to each other cannot block each other.
Frames are only ever read from a socket whose peer has proved it knows the
cluster's secret (``handshake``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Any

from . import handles

__all__ = ["Connection", "frame", "tune_tcp"]

_LENGTH = struct.Struct("!I")

# A TCP connection whose sent bytes stay unacknowledged this long is broken
# (a silent cut between nodes): its batches then go over Ray.
ACK_TIMEOUT_SECONDS = 5.0


def frame(value: Any) -> bytes:
    """``value`` as one frame."""
    body = handles.dumps(value)
    return _LENGTH.pack(len(body)) + body


def tune_tcp(sock: socket.socket) -> None:
    """Small frames leave at once; a silent cut breaks the connection within
    :data:`ACK_TIMEOUT_SECONDS` when data waits, and is found when idle too."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_USER_TIMEOUT", int(ACK_TIMEOUT_SECONDS * 1000)),
        ("TCP_KEEPIDLE", 5),
        ("TCP_KEEPINTVL", 1),
        ("TCP_KEEPCNT", 3),
    ):
        if hasattr(socket, option):  # Linux has them all
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class Connection:
    """One non-blocking socket: bytes in, whole frames out; frames queued out, written as it can.

    Attributes:
        peer: Set on our side of a connection we opened (what we send on it).
        loop: The event loop that reads it, if not the endpoint's thread.
    """

    __slots__ = ("closed", "incoming", "loop", "outgoing", "peer", "sock", "write_lock")

    def __init__(self, sock: socket.socket, peer: Any = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.incoming = bytearray()
        self.outgoing = bytearray()
        self.write_lock = threading.Lock()
        self.peer = peer
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def frames(self, data: bytes) -> list[Any]:
        """The whole frames ``data`` completes."""
        self.incoming += data
        found, start = [], 0
        while len(self.incoming) - start >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self.incoming, start)
            end = start + _LENGTH.size + size
            if len(self.incoming) < end:
                break
            found.append(handles.loads(memoryview(self.incoming)[start + _LENGTH.size : end]))
            start = end
        del self.incoming[:start]
        return found

    def write(self, data: bytes) -> bool:
        """Write what the socket takes now, queue the rest; whether some is left to write."""
        with self.write_lock:
            if self.closed:
                raise BrokenPipeError("the connection is closed")
            if not self.outgoing:
                try:
                    sent = self.sock.send(data)
                except BlockingIOError:
                    sent = 0
                if sent == len(data):
                    return False
                data = data[sent:]
            self.outgoing += data
            return True

    def flush(self) -> bool:
        """Write more of what is queued (the watching thread); whether some is still left."""
        with self.write_lock:
            try:
                sent = self.sock.send(self.outgoing)
            except BlockingIOError:
                sent = 0
            del self.outgoing[:sent]
            return bool(self.outgoing)

    def close(self) -> None:
        with self.write_lock:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.close()
