"""Opening a direct channel: connect, then prove we know the cluster's secret.

A Unix socket on this node or TCP to another; either way nothing is sent
on the connection before both ends have passed the handshake
(``handshake``), and the connect and the handshake together take at most
``timeout`` seconds: a peer behind a firewall that drops packets costs a
bounded wait (on a thread of its own, never a sender's, for TCP).
"""

from __future__ import annotations

import socket
from pathlib import Path

from .frames import tune_tcp
from .handshake import prove_as_client

__all__ = ["CONNECT_SECONDS", "dial"]

CONNECT_SECONDS = 2.0

Where = Path | tuple[str, int]


def dial(where: Where, secret: bytes, timeout: float = CONNECT_SECONDS) -> socket.socket:
    """A connected socket to ``where`` (a Unix socket's path, or ``(host, port)``) whose
    other end has proved it knows ``secret``, as we have to it.

    Raises:
        OSError: Nobody listens there, it could not be reached in time, or the
            handshake failed (``handshake.Refused``).
    """
    if isinstance(where, Path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: str | tuple[str, int] = str(where)
    else:
        family = socket.AF_INET6 if ":" in where[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        tune_tcp(sock)
        address = where
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        prove_as_client(sock, secret, timeout)
    except BaseException:
        sock.close()
        raise
    return sock
