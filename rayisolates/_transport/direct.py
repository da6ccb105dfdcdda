"""Direct channels between isolates: Unix sockets on one node, TCP between nodes.

Every message to another isolate costs a Ray call (an RPC through the
receiver's core worker, then its scheduling queue). Here each process that
receives listens on a Unix socket of its own in its node's private folder
(``folders``) and, when it may be reached from other nodes, on a TCP port
of the address Ray uses for its node. A sender connects on first use: to
the Unix socket if the destination has one on this node (at once), else
over TCP to the address the destination's actor gives when asked over Ray
(``locate``; the connection is made on a thread of its own, and batches go
over Ray meanwhile). Before a byte of a connection is unpickled, both ends
prove they know the secret the driver handed its processes over Ray
(``handshake``); a peer that fails is refused, logged, and gets nothing.

A direct channel is only a carrier beneath an outbox (``outbox``): the
same batches, the same sequence numbers, the same inbox on the other side.
So ordering and exactly-once do not depend on it. A batch counts as
delivered when the receiver acknowledges it; if the connection breaks
first (the peer ended, or a silent cut kept TCP from getting its bytes
acknowledged for ``frames.ACK_TIMEOUT_SECONDS``), every unacknowledged batch
is sent again over Ray under its number (the receiver drops what it has
seen), and that destination is tried directly again after
:data:`RETRY_SECONDS`. A receiver that died is then reported dead by Ray,
as before. Batches that hold Ray objects (large messages, values in the
object store) always go over Ray, which must count their references; actor
handles (in a ``SendPort``, an ``Isolate``, a control record) take the
direct channel, by id (``handles``).

One thread per process (``rayisolates-direct``) accepts connections, reads
acknowledgements of what the process sent, and incoming batches too unless
a loop is given (a spawned isolate reads its incoming batches on its own
event loop: one thread hop less per message). Handshakes run on short-lived
threads of their own, so a peer that connects and stalls holds up nobody.
Nothing here waits on an established socket: writes are non-blocking, and
what a socket does not take at once is queued and written by the reading
thread when it can, so two processes writing large batches to each other
cannot block each other, and a busy sender's batches are still
acknowledged.

Frames (``frames``): ``(sender, seq, items)`` one way, ``(sender, seq)`` back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.actor import ActorHandle

from .codec import STORED
from .dial import dial
from .folders import direct_folder, private, sweep
from .frames import Connection, frame, tune_tcp
from .handshake import Refused, prove_as_server
from .rpc import soon

__all__ = [
    "RETRY_SECONDS",
    "Address",
    "DirectFuture",
    "Endpoint",
    "Fallback",
    "Locate",
    "Reach",
    "direct_first",
    "direct_folder",
    "portable",
    "sweep",
]

log = logging.getLogger("rayisolates.direct")

_READ_SIZE = 1 << 18
_HANDSHAKE_SECONDS = 2.0
_MAX_HANDSHAKES = 64  # at once; more connections waiting to prove themselves are refused
RETRY_SECONDS = 2.0  # after a destination could not be reached directly, or its channel broke
_TICK_SECONDS = 1.0  # how often the reading thread looks at the time when nothing happens

# Where a process listens for other nodes: (node id, host, port).
Address = tuple[str, str, int]
# locate(destination, route) -> the destination's Address (or None), found over Ray
Locate = Callable[[str, Any], concurrent.futures.Future[Any]]


@dataclass(frozen=True, slots=True)
class Reach:
    """What a process's direct channels need, handed out by the driver over Ray.

    Attributes:
        secret: Every process of the driver's cluster knows it; nobody else.
        across_nodes: Whether to listen and connect over TCP between nodes.
    """

    secret: bytes
    across_nodes: bool


def portable(batch: list[Any]) -> bool:
    """Whether a batch of encoded messages can travel outside Ray: no object refs in it
    (actor handles may be)."""
    return all(
        item[1] != STORED and (not item[3] or all(isinstance(ref, ActorHandle) for ref in item[3]))
        for item in batch
    )


# What a batch falls back to when its direct channel breaks: the same call over Ray.
Fallback = Callable[[], concurrent.futures.Future[Any]]


class _Peer:
    """A connection we opened to another isolate: batches out, acknowledgements in."""

    def __init__(
        self,
        sock: socket.socket,
        request: Callable[[str, Connection], None],
        broken: Callable[[_Peer], None],
    ) -> None:
        self.connection = Connection(sock, self)
        self._request = request
        self._on_broken = broken
        self.lock = threading.Lock()
        self.waiting: dict[tuple[str, int], tuple[concurrent.futures.Future[Any], Fallback]] = {}
        self.broken = False

    def send(
        self, sender: str, seq: int, batch: list[Any], fallback: Fallback
    ) -> concurrent.futures.Future[Any] | None:
        """Write one batch, never waiting; it is done once acknowledged (or as its fallback)."""
        data = frame((sender, seq, batch))
        future = DirectFuture()
        with self.lock:
            if self.broken:
                return None
            self.waiting[(sender, seq)] = (future, fallback)
        try:
            if self.connection.write(data):
                self._request("flush", self.connection)
        except OSError:
            self.break_off()
        return future

    def acknowledged(self, key: tuple[str, int]) -> None:
        with self.lock:
            waiting = self.waiting.pop(key, None)
        if waiting is not None:
            waiting[0].set_result(None)

    def break_off(self) -> None:
        """The connection broke: what was not acknowledged goes over Ray, under its number."""
        with self.lock:
            if self.broken:
                return
            self.broken = True
            waiting, self.waiting = self.waiting, {}
        self.connection.close()
        self._request("forget", self.connection)
        self._on_broken(self)
        for future, fallback in waiting.values():
            _chain(fallback, future)


class DirectFuture(concurrent.futures.Future[Any]):
    """A batch's future here: completed on our own threads only, never on Ray's.

    An acknowledgement completes it on the reading thread; a fallback's Ray
    call completes it on the completions thread (``_rpc.soon``). So what
    waits for it may run right where it completes (``_rpc.when_done``
    skips the hop it makes for Ray's futures).
    """

    completes_off_ray = True


def _chain(fallback: Fallback, future: concurrent.futures.Future[Any]) -> None:
    try:
        carried = fallback()
    except Exception as error:  # Ray is gone (shutdown)
        future.set_exception(error)
        return

    def copy(done: concurrent.futures.Future[Any]) -> None:
        if done.cancelled():
            future.cancel()
        elif (error := done.exception()) is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result())

    carried.add_done_callback(lambda done: soon(lambda: copy(done)))


class _Later:
    """A destination not reachable directly now: over Ray until ``until`` (monotonic)."""

    __slots__ = ("until",)

    def __init__(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds


_CONNECTING = "connecting"  # a connection to the destination is being made


class _Refusals:
    """Logs refused connections: the first at once, then at most one line per minute."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._lock = threading.Lock()
        self._next = 0.0
        self._unsaid = 0

    def refused(self, peer: Any, reason: str) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                self._unsaid += 1
                return
            unsaid, self._unsaid, self._next = self._unsaid, 0, now + 60
        more = f" ({unsaid} more since the last report)" if unsaid else ""
        log.warning(
            "rayisolates: %s refused a connection from %s: %s; nothing it sent was read%s",
            self._where,
            peer or "a local process",
            reason,
            more,
        )


class Endpoint:
    """This process's end of its direct channels.

    Args:
        folder: The node's private folder (:func:`direct_folder`), or ``None``:
            no Unix sockets.
        own_id: This isolate's id; its socket is ``folder/<own_id>.sock``.
        on_batch: Takes each batch that arrives, ``(sender, seq, items)``, on
            the reading thread; ``None``: this process only sends.
        loop: Where incoming batches are read and taken instead (an
            isolate's own loop: one thread hop less per message, and a
            receiver whose loop is busy takes nothing, as over Ray).
            Acknowledgements of what this process sends are still read on
            the reading thread, so a busy sender's batches keep leaving.
        secret: What every peer must prove it knows (``handshake``).
        node: This process's Ray node id.
        host: The address to listen on for other nodes (Ray's for this
            node), or ``None``: this node only.
        locate: Finds a destination's :data:`Address` over Ray, given its
            route; ``None``: no connections to other nodes.
        retry_seconds: How long a destination that could not be reached
            directly, or whose channel broke, stays on Ray.
    """

    def __init__(
        self,
        folder: Path | None,
        own_id: str,
        on_batch: Callable[[str, int, list[Any]], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        secret: bytes,
        node: str = "",
        host: str | None = None,
        locate: Locate | None = None,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self._folder = folder
        self._retry_seconds = retry_seconds
        self._on_batch = on_batch
        self._loop = loop
        self._secret = secret
        self._node = node
        self._locate = locate
        self._on_loop: set[Connection] = set()  # incoming connections the loop reads
        self._lock = threading.Lock()
        self._peers: dict[str, _Peer | _Later | str] = {}
        self._selector = selectors.DefaultSelector()
        self._requests: list[tuple[str, Any]] = []  # for the reading thread
        self._waker, self._wake_end = socket.socketpair()
        self._wake_end.setblocking(False)
        self._selector.register(self._wake_end, selectors.EVENT_READ, None)
        self._closed = False
        self._handshakes = 0
        self._refusals = _Refusals(f"isolate {own_id}")
        self.carried = 0  # messages written to direct channels so far (a figure)
        self.address: Address | None = None
        self._path: Path | None = None
        if on_batch is not None and folder is not None:
            self._path = folder / f"{own_id}.sock"
            self._listen_here(folder, self._path)
        if on_batch is not None and host is not None:
            try:
                tcp = socket.create_server((host, 0), family=_family(host), backlog=256)
            except OSError as error:  # not an address of ours (NAT, a container): Ray it is
                log.warning(
                    "rayisolates: cannot listen on %s (%s); messages from other nodes to "
                    "isolate %s go over Ray",
                    host,
                    error,
                    own_id,
                )
            else:
                self._selector.register(tcp, selectors.EVENT_READ, "tcp")
                self.address = (node, host, tcp.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name="rayisolates-direct", daemon=True)
        self._thread.start()

    def _listen_here(self, folder: Path, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        for attempt in range(3):
            try:
                listener.bind(str(path))
                break
            except FileNotFoundError:  # the last endpoint here removed the folder just now
                if attempt == 2 or not private(folder):
                    raise
        listener.listen(256)
        self._selector.register(listener, selectors.EVENT_READ, "unix")

    # Sending ------------------------------------------------------------------------

    def send(
        self,
        destination: str,
        sender: str,
        seq: int,
        batch: list[Any],
        fallback: Fallback,
        route: Any = None,
    ) -> concurrent.futures.Future[Any] | None:
        """Send a batch directly if ``destination`` can be reached so now; else ``None``.

        Never waits for the other side. The future ends once the batch is
        acknowledged, or, should the channel break first, as ``fallback()``'s.
        ``route`` finds a destination on another node (``locate``).
        """
        peer = self._peer(destination, route)
        if peer is None:
            return None
        future = peer.send(sender, seq, batch, fallback)
        if future is not None:
            self.carried += len(batch)  # a figure: a lost count under a race is harmless
        return future

    def reachable(self, destination: str, route: Any = None) -> bool | None:
        """Whether ``destination`` can be reached directly now (connecting on this node at
        once if needed); ``None``: not yet, a connection to another node is being made."""
        if self._peer(destination, route) is not None:
            return True
        with self._lock:
            return None if self._peers.get(destination) == _CONNECTING else False

    def _peer(self, destination: str, route: Any) -> _Peer | None:
        with self._lock:
            known = self._peers.get(destination)
            if isinstance(known, _Peer) and not known.broken:
                return known
            if known == _CONNECTING or self._closed:
                return None
            if isinstance(known, _Later) and time.monotonic() < known.until:
                return None
            self._peers[destination] = _CONNECTING
        path = None if self._folder is None else self._folder / f"{destination}.sock"
        if path is not None and path.exists():
            return self._settle(destination, self._dial(destination, path))
        if self._locate is not None and route is not None:
            self._locate_then_dial(destination, route)
            return None
        return self._settle(destination, None)

    def _dial(self, destination: str, where: Path | tuple[str, int]) -> _Peer | None:
        """A channel to ``where``, or ``None`` (logged when a peer refused us)."""
        try:
            sock = dial(where, self._secret)
        except ConnectionRefusedError:  # a Unix socket left by a process that died
            if isinstance(where, Path):
                with contextlib.suppress(OSError):
                    where.unlink()
            return None
        except Refused as refusal:
            log.warning("rayisolates: %s at %s refused us: %s", destination, where, refusal)
            return None
        except OSError:
            return None
        return _Peer(sock, self._request, self._broken)

    def _settle(self, destination: str, peer: _Peer | None) -> _Peer | None:
        """Record how ``destination`` is reached from now on; ``peer`` if it is kept."""
        with self._lock:
            if self._closed or self._peers.get(destination) != _CONNECTING:
                kept = None  # closed, or forgotten meanwhile
            else:
                kept = peer
                self._peers[destination] = _Later(self._retry_seconds) if peer is None else peer
        if peer is not None and kept is None:
            peer.connection.close()
        if kept is not None:
            self._request("register", kept.connection)
        return kept

    def _locate_then_dial(self, destination: str, route: Any) -> None:
        """Ask where ``destination`` listens (over Ray), then connect on a thread of its own."""
        assert self._locate is not None
        try:
            located = self._locate(destination, route)
        except Exception:  # Ray is gone
            self._settle(destination, None)
            return

        def dial_there(done: concurrent.futures.Future[Any]) -> None:
            address = None if done.cancelled() or done.exception() else done.result()
            peer = None
            if address is not None:
                node, host, port = address
                here = self._folder is not None and node == self._node
                path = self._folder / f"{destination}.sock" if here and self._folder else None
                where = path if path is not None and path.exists() else (host, port)
                peer = self._dial(destination, where)
            self._settle(destination, peer)

        located.add_done_callback(
            lambda done: threading.Thread(
                target=dial_there, args=(done,), name="rayisolates-dial", daemon=True
            ).start()
        )

    def _broken(self, peer: _Peer) -> None:
        with self._lock:
            for destination, known in self._peers.items():
                if known is peer:
                    self._peers[destination] = _Later(self._retry_seconds)
                    break

    def forget(self, destination: str) -> None:
        """Close the channel to a destination that has ended."""
        with self._lock:
            known = self._peers.pop(destination, None)
        if isinstance(known, _Peer):
            known.break_off()

    def sever(self) -> None:
        """Break every connection, both ways, as a network fault would; listening goes on.

        What was not acknowledged goes over Ray; each destination is tried
        directly again after the retry time.
        """
        with self._lock:
            peers = [peer for peer in self._peers.values() if isinstance(peer, _Peer)]
            on_loop = list(self._on_loop)
        for peer in peers:
            peer.break_off()
        for connection in on_loop:
            assert connection.loop is not None
            with contextlib.suppress(RuntimeError):
                connection.loop.call_soon_threadsafe(self._stop_reading, connection)
        self._request("sever", None)

    # The reading thread -----------------------------------------------------------

    def _request(self, what: str, connection: Any) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                self._requests.append((what, connection))
        if closed:  # nobody will watch it: its peer must see it end
            if isinstance(connection, Connection):
                connection.close()
            return
        with contextlib.suppress(OSError):
            self._waker.send(b"\0")

    def _run(self) -> None:
        while not self._closed:
            for key, events in self._selector.select(_TICK_SECONDS):
                try:
                    if key.data is None:
                        self._take_requests()
                    elif key.data in ("unix", "tcp"):
                        self._accept(key.fileobj, key.data)  # type: ignore[arg-type]
                    else:
                        if events & selectors.EVENT_WRITE:
                            self._flush(key.data)
                        if events & selectors.EVENT_READ:
                            self._read(key.data)
                except Exception:  # a bug of ours: say so, keep serving the others
                    if not self._closed:
                        log.exception("rayisolates: a direct channel's reading thread failed")

    def _take_requests(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_end.recv(4096)
        with self._lock:
            requests, self._requests = self._requests, []
        for what, connection in requests:
            if what == "sever":  # the incoming connections this thread reads
                for key in list(self._selector.get_map().values()):
                    if isinstance(key.data, Connection) and key.data.peer is None:
                        self._drop(key.data)
                continue
            if what == "forget":
                self._unwatch(connection)
                continue
            if connection.closed:
                continue
            events = selectors.EVENT_READ
            if what == "flush":  # the loop reads a connection it owns; we only write
                events = (
                    selectors.EVENT_WRITE
                    if connection.loop
                    else selectors.EVENT_READ | selectors.EVENT_WRITE
                )
            try:
                self._watch(connection, events)
            except (ValueError, OSError):  # closed meanwhile
                self._drop(connection)

    def _watch(self, connection: Connection, events: int) -> None:
        """Select ``events`` of ``connection`` from now on (the reading thread only).

        A socket closed elsewhere frees its number, which a new socket may
        get before the old one is unwatched: that stale entry goes first.
        """
        try:
            key = self._selector.get_key(connection.sock)
        except KeyError:
            self._selector.register(connection.sock, events, connection)
            return
        if key.data is connection:
            self._selector.modify(connection.sock, key.events | events, connection)
        else:
            self._unwatch(key.data)
            self._selector.register(connection.sock, events, connection)

    def _unwatch(self, connection: Connection) -> None:
        for key in list(self._selector.get_map().values()):
            if key.data is connection:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(key.fileobj)

    def _flush(self, connection: Connection) -> None:
        try:
            left = connection.flush()
        except OSError:
            self._drop(connection)
            return
        if left:
            return
        if connection.loop is not None:
            self._selector.unregister(connection.sock)
        else:
            self._selector.modify(connection.sock, selectors.EVENT_READ, connection)

    def _accept(self, listener: socket.socket, kind: str) -> None:
        try:
            sock, peer = listener.accept()
        except OSError:
            return
        if kind == "unix":
            credentials = sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
            )
            _, uid, _ = struct.unpack("3i", credentials)
            if uid != os.getuid():  # only the user running Ray (the folder should see to it)
                self._refusals.refused(f"uid {uid}", "another user")
                sock.close()
                return
        with self._lock:
            crowded = self._handshakes >= _MAX_HANDSHAKES
            if not crowded:
                self._handshakes += 1
        if crowded:
            self._refusals.refused(peer, f"{_MAX_HANDSHAKES} handshakes under way already")
            sock.close()
            return
        threading.Thread(
            target=self._admit, args=(sock, peer, kind), name="rayisolates-handshake", daemon=True
        ).start()

    def _admit(self, sock: socket.socket, peer: Any, kind: str) -> None:
        """A connection whose peer proves it knows the secret is read from; others closed."""
        try:
            prove_as_server(sock, self._secret, _HANDSHAKE_SECONDS)
        except Refused as refusal:
            self._refusals.refused(peer, str(refusal))
            sock.close()
            return
        finally:
            with self._lock:
                self._handshakes -= 1
        if kind == "tcp":
            tune_tcp(sock)
        connection = Connection(sock)
        if self._closed:
            connection.close()
        elif self._loop is None:
            self._request("register", connection)
        else:
            connection.loop = self._loop
            try:
                self._loop.call_soon_threadsafe(self._read_on_loop, connection)
            except RuntimeError:  # the loop has closed: the isolate is gone
                connection.close()

    def _read_on_loop(self, connection: Connection) -> None:
        if self._closed or connection.closed:
            connection.close()
            return
        assert connection.loop is not None
        with self._lock:
            self._on_loop.add(connection)
        connection.loop.add_reader(connection.sock, self._read, connection)

    def _read(self, connection: Connection) -> None:
        try:
            data = connection.sock.recv(_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(connection)
            return
        frames = connection.frames(data)
        if connection.peer is not None:
            for key in frames:
                connection.peer.acknowledged(key)
            return
        assert self._on_batch is not None
        for sender, seq, items in frames:
            try:
                self._on_batch(sender, seq, items)
            except Exception:  # a bug of ours; the batch counts as taken (it must not stall)
                log.exception("rayisolates: a batch read from a direct channel failed")
        acks = b"".join(frame((sender, seq)) for sender, seq, _ in frames)
        try:
            if acks and connection.write(acks):
                self._request("flush", connection)
        except OSError:
            self._drop(connection)

    def _drop(self, connection: Connection) -> None:
        """A connection ended or failed (on the thread or loop that found it)."""
        if threading.current_thread() is self._thread:
            self._unwatch(connection)
        else:
            self._request("forget", connection)
        if connection.loop is not None:
            with contextlib.suppress(RuntimeError):
                connection.loop.call_soon_threadsafe(self._stop_reading, connection)
            return
        if connection.peer is not None:
            connection.peer.break_off()
        else:
            connection.close()

    def _stop_reading(self, connection: Connection) -> None:
        assert connection.loop is not None
        with self._lock:
            self._on_loop.discard(connection)
        with contextlib.suppress(ValueError, OSError):
            connection.loop.remove_reader(connection.sock)
        connection.close()

    # Closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening and close every channel; idempotent.

        Batches still waiting for an acknowledgement go over Ray instead.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()
        if self._folder is not None:
            with contextlib.suppress(OSError):
                self._folder.rmdir()  # the node's last endpoint: nothing is left in it
        with contextlib.suppress(OSError):
            self._waker.send(b"\0")
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)
        with self._lock:
            peers = [peer for peer in self._peers.values() if isinstance(peer, _Peer)]
            self._peers.clear()
            requests, self._requests = self._requests, []
        for peer in peers:
            peer.break_off()
        for _, connection in requests:  # accepted, never watched
            if isinstance(connection, Connection):
                connection.close()
        with self._lock:
            on_loop = list(self._on_loop)
        for connection in on_loop:
            if connection.loop is None or connection.loop.is_closed():
                connection.close()
            elif asyncio._get_running_loop() is connection.loop:
                self._stop_reading(connection)
            else:
                with contextlib.suppress(RuntimeError):
                    connection.loop.call_soon_threadsafe(self._stop_reading, connection)
        for key in list(self._selector.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
        self._waker.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# transmit(destination, route, sender, seq, batch) -> the call's future (as _outbox.Transmit)
_Transmit = Callable[[str, Any, str, int, list[Any]], concurrent.futures.Future[Any]]


def direct_first(endpoint: Endpoint, over_ray: _Transmit) -> _Transmit:
    """A transmit for an outbox: directly where it can (no objects in the batch), else over Ray."""

    def transmit(
        destination: str, route: Any, sender: str, seq: int, batch: list[Any]
    ) -> concurrent.futures.Future[Any]:
        if portable(batch):
            future = endpoint.send(
                destination,
                sender,
                seq,
                batch,
                lambda: over_ray(destination, route, sender, seq, batch),
                route,
            )
            if future is not None:
                return future
        return over_ray(destination, route, sender, seq, batch)

    return transmit
