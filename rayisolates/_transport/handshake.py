"""Handshake: both ends of a fresh direct channel prove they know the cluster's secret.

A direct channel unpickles what it receives, and unpickling runs code, so
only processes of the same driver's cluster may write to one. On one node
the private socket folder and the peer's uid see to that (``direct``);
between nodes a TCP port is open to anyone who can reach it. So the driver
makes a secret (:func:`new_secret`) and hands it to its processes over Ray,
and before anything else crosses a new connection, each end proves to the
other that it knows the secret, without sending it: challenge and response
with HMAC-SHA256, both ways in one exchange (as ``multiprocessing.connection``
does one way with ``deliver_challenge`` and ``answer_challenge``).

The exchange (``k`` the secret; every message has a fixed size, so nothing
read from the peer says how much to read, and nothing is unpickled)::

    server (accepted)                                  client (connected)
      |--- MAGIC (8) + nonce_s (32) ------------------------------>|
      |                                               checks MAGIC |
      |<-- HMAC(k, "client" + nonce_s) (32) + nonce_c (32) --------|
      | checks                                                     |
      |--- HMAC(k, "server" + nonce_c + nonce_s) (32) ------------>|
      |                                                  checks it |
    the channel's own frames follow, both ways

``MAGIC`` names the protocol and its version, so a peer speaking something
else is told apart from one with the wrong secret. Each end draws a fresh
random nonce per connection, so an answer recorded from one exchange is no
answer in the next. The ``"client"``/``"server"`` prefixes keep the two
directions apart: what one end computes is never a valid answer for the
other, so a challenge reflected back to its sender, or a proof passed from
one role to the other, fails. Digests are compared in constant time.

On a failed check an end sends nothing more and raises :class:`Refused`;
its caller closes the socket, which the other end sees as ``"closed"``. The
server learns the client is genuine before it proves anything itself, so
a client without the secret gets nothing from the server that depends on
it. The server finishes first: a client that then refuses the server just
closes, and the server's first read of frames finds the connection closed.

What it does not do: it authenticates the two ends when they connect and
nothing after. The traffic is not encrypted or protected from tampering; a
party that can read or alter packets between the nodes can read messages
or take over an authenticated connection, and could relay a handshake
between a genuine client and server. Across an untrusted network that
needs TLS (Ray itself assumes a trusted one).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import socket
import time
from collections.abc import Callable

__all__ = [
    "MAGIC",
    "SECRET_BYTES",
    "Refused",
    "new_secret",
    "prove_as_client",
    "prove_as_server",
]

SECRET_BYTES = 32
MAGIC = b"RAYISO\x00\x01"  # the protocol's name, then its version

_NONCE_BYTES = 32
_DIGEST_BYTES = hashlib.sha256().digest_size
_GREETING_BYTES = len(MAGIC) + _NONCE_BYTES  # server -> client
_ANSWER_BYTES = _DIGEST_BYTES + _NONCE_BYTES  # client -> server
_PROOF_BYTES = _DIGEST_BYTES  # server -> client


class Refused(ConnectionError):
    """The peer did not prove it knows the secret (or broke off, or was too slow).

    Its message is the reason: ``"wrong secret"`` (the peer's digest did not
    match), ``"bad greeting"`` (the server does not speak this protocol or
    version), ``"closed"`` (the connection ended or failed mid-handshake) or
    ``"timed out"`` (the handshake did not finish in time). Nothing more
    should be read from or written to the socket: close it.
    """


def new_secret() -> bytes:
    """A fresh random secret of :data:`SECRET_BYTES` bytes for one cluster's processes."""
    return secrets.token_bytes(SECRET_BYTES)


def prove_as_client(sock: socket.socket, secret: bytes, timeout: float = 2.0) -> None:
    """Prove the connecting end knows ``secret``, and make the server prove it too.

    Args:
        sock: A stream socket just connected to the server, in any blocking
            mode; nothing has been read from or written to it.
        secret: The cluster's secret (:func:`new_secret`).
        timeout: Seconds for the whole handshake, however the server paces
            its bytes.

    Raises:
        Refused: The server failed to prove it knows ``secret``, or did not
            speak this protocol, or broke off, or was too slow. ``sock`` is
            left in an unknown state; close it.
        ValueError: ``secret`` is shorter than :data:`SECRET_BYTES` (a bug of
            the caller: checked before any byte is sent).

    On success ``sock`` has its previous timeout (or blocking mode) again,
    and the next byte read from it is the first the server sent after the
    handshake.
    """
    _check(secret)

    def exchange(deadline: float) -> None:
        greeting = _receive(sock, _GREETING_BYTES, deadline)
        if greeting[: len(MAGIC)] != MAGIC:
            raise Refused("bad greeting")
        server_nonce = greeting[len(MAGIC) :]
        client_nonce = secrets.token_bytes(_NONCE_BYTES)
        _send(sock, _digest(secret, b"client", server_nonce) + client_nonce, deadline)
        proof = _receive(sock, _PROOF_BYTES, deadline)
        if not hmac.compare_digest(proof, _digest(secret, b"server", client_nonce, server_nonce)):
            raise Refused("wrong secret")

    _within(sock, timeout, exchange)


def prove_as_server(sock: socket.socket, secret: bytes, timeout: float = 2.0) -> None:
    """Make the connecting client prove it knows ``secret``, then prove it too.

    Args:
        sock: A stream socket just accepted, in any blocking mode; nothing
            has been read from or written to it.
        secret: The cluster's secret (:func:`new_secret`).
        timeout: Seconds for the whole handshake, however the client paces
            its bytes: a client that connects and stalls, or trickles, is
            cut off at this deadline.

    Raises:
        Refused: The client failed to prove it knows ``secret``, or broke
            off, or was too slow. Nothing was sent after the greeting;
            close ``sock``.
        ValueError: ``secret`` is shorter than :data:`SECRET_BYTES` (a bug of
            the caller: checked before any byte is sent).

    On success ``sock`` has its previous timeout (or blocking mode) again,
    and the next byte read from it is the first the client sent after the
    handshake. The client checks the server's proof after this returns: a
    client that refuses it closes the connection.
    """
    _check(secret)

    def exchange(deadline: float) -> None:
        server_nonce = secrets.token_bytes(_NONCE_BYTES)
        _send(sock, MAGIC + server_nonce, deadline)
        answer = _receive(sock, _ANSWER_BYTES, deadline)
        digest, client_nonce = answer[:_DIGEST_BYTES], answer[_DIGEST_BYTES:]
        if not hmac.compare_digest(digest, _digest(secret, b"client", server_nonce)):
            raise Refused("wrong secret")
        _send(sock, _digest(secret, b"server", client_nonce, server_nonce), deadline)

    _within(sock, timeout, exchange)


def _check(secret: bytes) -> None:
    if len(secret) < SECRET_BYTES:
        raise ValueError(
            f"a handshake secret must have at least {SECRET_BYTES} bytes, not {len(secret)}: "
            "make one with new_secret()"
        )


def _digest(secret: bytes, role: bytes, *nonces: bytes) -> bytes:
    return hmac.new(secret, role + b"".join(nonces), hashlib.sha256).digest()


def _within(sock: socket.socket, timeout: float, exchange: Callable[[float], None]) -> None:
    """Run ``exchange(deadline)`` on ``sock``; every failure becomes :class:`Refused`."""
    previous = sock.gettimeout()
    try:
        exchange(time.monotonic() + timeout)
    except Refused:
        raise
    except TimeoutError as exc:
        raise Refused("timed out") from exc
    except OSError as exc:  # reset, broken pipe, a socket closed under us
        raise Refused("closed") from exc
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(previous)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Refused("timed out")
    return left


def _send(sock: socket.socket, data: bytes, deadline: float) -> None:
    sock.settimeout(_remaining(deadline))
    sock.sendall(data)  # its timeout bounds the whole call, not each chunk


def _receive(sock: socket.socket, size: int, deadline: float) -> bytes:
    """Exactly ``size`` bytes (never more: what follows is the channel's), by ``deadline``."""
    data = bytearray()
    while len(data) < size:
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise Refused("closed")
        data += chunk
    return bytes(data)
