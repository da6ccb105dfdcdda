"""Direct channels between isolates on one node: Unix sockets beside Ray's RPC.

Every message to another isolate costs a Ray call (an RPC through the
receiver's core worker, then its scheduling queue), even when both
processes share a machine. Here each process that receives listens on a
Unix socket of its own, named after its isolate id in a folder per node
that only the user running Ray can enter (mode 700; the peer's uid is
checked too). A sender on the same node connects on first use and writes
its batches there; on another node there is no such socket and batches go
over Ray as before.

A direct channel is only a carrier beneath an outbox (``_outbox``): the
same batches, the same sequence numbers, the same inbox on the other side.
So ordering and exactly-once do not depend on it. A batch counts as
delivered when the receiver acknowledges it; if the connection breaks
first, every unacknowledged batch is sent again over Ray under its number
(the receiver drops what it has seen), and that destination stays on Ray.
A receiver that died is then reported dead by Ray, as before. Batches that
hold Ray objects or actor handles (large messages, ``SendPort``) always go
over Ray, which must count their references; actor handles (in a
``SendPort``, an ``Isolate``, a control record) take the direct channel,
by id (``handles``).

One thread per process (``rayisolates-direct``) reads acknowledgements of
what the process sent, and incoming batches too unless a loop is given
(a spawned isolate reads its incoming batches on its own event loop: one
thread hop less per message). Nothing here waits on a socket: writes are
non-blocking, and what a socket does not take at once is queued and
written by the reading thread when it can, so two processes writing large
batches to each other cannot block each other, and a busy sender's
batches are still acknowledged.

Frames: a 4-byte length, then a pickle (``handles.dumps``): ``(sender, seq,
items)`` one way, ``(sender, seq)`` back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import selectors
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.actor import ActorHandle

from . import handles
from .codec import STORED
from .rpc import soon

__all__ = [
    "DirectFuture",
    "Endpoint",
    "Fallback",
    "direct_first",
    "direct_folder",
    "portable",
    "sweep",
]

_LENGTH = struct.Struct("!I")
_READ_SIZE = 1 << 18
_CONNECT_SECONDS = 2.0
_STALE_SECONDS = 10.0  # a socket older than this that nobody listens on was left by the dead


def direct_folder(node_id: str, base: str | None = None) -> Path | None:
    """This user's folder of sockets for ``node_id``, made private; ``None`` if it is not ours.

    A folder someone else owns or can enter would let them in: then no
    direct channel is used at all (everything goes over Ray). The folder is
    removed by the last endpoint on the node to close (:meth:`Endpoint.close`),
    and made again by the next.
    """
    root = Path(base or tempfile.gettempdir()) / f"rayisolates-{os.getuid()}"
    folder = root / node_id[:16]
    return folder if _private(root) and _private(folder) else None


def _private(path: Path) -> bool:
    """Make ``path`` a folder only this user can enter, or find it is one; whether it is."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        print(
            f"rayisolates: {path} is not a private folder of this user; "
            "messages between isolates on this node go over Ray",
            file=sys.stderr,
        )
        return False
    return True


def sweep(folder: Path, min_age: float = _STALE_SECONDS) -> int:
    """Remove what ended processes left behind; how many sockets.

    In ``folder`` (this node's) and in every other node's folder beside it:
    sockets nobody listens on that were made more than ``min_age`` seconds
    ago (a socket made just now may not listen yet), then the other nodes'
    folders that are left empty (nodes that are gone, or have no isolate now).
    """
    removed = 0
    others = [path for path in folder.parent.iterdir() if path.is_dir() and path != folder]
    for node in [folder, *others]:
        for path in node.glob("*.sock"):
            with contextlib.suppress(OSError):
                if time.time() - path.lstat().st_mtime >= min_age and not _listening(path):
                    path.unlink()
                    removed += 1
        if node is not folder:
            with contextlib.suppress(OSError):
                node.rmdir()  # only if empty
    return removed


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        return False
    except OSError:
        return True  # not ours to judge
    finally:
        probe.close()
    return True


def portable(batch: list[Any]) -> bool:
    """Whether a batch of encoded messages can travel outside Ray: no object refs in it
    (actor handles may be)."""
    return all(
        item[1] != STORED and (not item[3] or all(isinstance(ref, ActorHandle) for ref in item[3]))
        for item in batch
    )


def _frame(value: Any) -> bytes:
    body = handles.dumps(value)
    return _LENGTH.pack(len(body)) + body


class _Connection:
    """One non-blocking socket: bytes in, whole frames out; frames queued out, written as it can."""

    __slots__ = ("closed", "incoming", "loop", "outgoing", "peer", "sock", "write_lock")

    def __init__(self, sock: socket.socket, peer: _Peer | None = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.incoming = bytearray()
        self.outgoing = bytearray()
        self.write_lock = threading.Lock()
        self.peer = peer  # set on our side of a connection we opened
        self.loop: asyncio.AbstractEventLoop | None = None  # reads it, if not our thread
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
        """Write more of what is queued (reading thread); whether some is still left."""
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


# What a batch falls back to when its direct channel breaks: the same call over Ray.
Fallback = Callable[[], concurrent.futures.Future[Any]]


class _Peer:
    """A connection we opened to another isolate: batches out, acknowledgements in."""

    def __init__(self, sock: socket.socket, request: Callable[[str, _Connection], None]) -> None:
        self.connection = _Connection(sock, self)
        self._request = request
        self.lock = threading.Lock()
        self.waiting: dict[tuple[str, int], tuple[concurrent.futures.Future[Any], Fallback]] = {}
        self.broken = False

    def send(
        self, sender: str, seq: int, batch: list[Any], fallback: Fallback
    ) -> concurrent.futures.Future[Any] | None:
        """Write one batch, never waiting; it is done once acknowledged (or as its fallback)."""
        frame = _frame((sender, seq, batch))
        future = DirectFuture()
        with self.lock:
            if self.broken:
                return None
            self.waiting[(sender, seq)] = (future, fallback)
        try:
            if self.connection.write(frame):
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


class Endpoint:
    """This process's end of the direct channels on its node.

    Args:
        folder: The node's private folder (:func:`direct_folder`).
        own_id: This isolate's id; its socket is ``folder/<own_id>.sock``.
        on_batch: Takes each batch that arrives, ``(sender, seq, items)``, on
            the reading thread; ``None``: this process only sends.
        loop: Where incoming batches are read and taken instead (an
            isolate's own loop: one thread hop less per message, and a
            receiver whose loop is busy takes nothing, as over Ray).
            Acknowledgements of what this process sends are still read on
            the reading thread, so a busy sender's batches keep leaving.
    """

    def __init__(
        self,
        folder: Path,
        own_id: str,
        on_batch: Callable[[str, int, list[Any]], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._folder = folder
        self._on_batch = on_batch
        self._loop = loop
        self._on_loop: set[_Connection] = set()  # incoming connections the loop reads
        self._lock = threading.Lock()
        self._peers: dict[str, _Peer | None] = {}  # None: not reachable directly
        self._selector = selectors.DefaultSelector()
        self._requests: list[tuple[str, _Connection]] = []  # for the reading thread
        self._waker, self._wake_end = socket.socketpair()
        self._wake_end.setblocking(False)
        self._selector.register(self._wake_end, selectors.EVENT_READ, None)
        self._closed = False
        self.carried = 0  # messages written to direct channels so far (a figure)
        self._path: Path | None = None
        self._listener: socket.socket | None = None
        if on_batch is not None:
            self._path = folder / f"{own_id}.sock"
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            for attempt in range(3):
                try:
                    self._listener.bind(str(self._path))
                    break
                except FileNotFoundError:  # the last endpoint here removed the folder just now
                    if attempt == 2 or not _private(folder):
                        raise
            self._listener.listen(256)
            self._selector.register(self._listener, selectors.EVENT_READ, "listener")
        self._thread = threading.Thread(target=self._run, name="rayisolates-direct", daemon=True)
        self._thread.start()

    # Sending ------------------------------------------------------------------------

    def send(
        self, destination: str, sender: str, seq: int, batch: list[Any], fallback: Fallback
    ) -> concurrent.futures.Future[Any] | None:
        """Send a batch directly if ``destination`` listens on this node; else ``None``.

        Never waits for the other side. The future ends once the batch is
        acknowledged, or, should the channel break first, as ``fallback()``'s.
        """
        peer = self._peer(destination)
        if peer is None:
            return None
        future = peer.send(sender, seq, batch, fallback)
        if future is None:  # it broke before this batch: Ray from now on
            with self._lock:
                if self._peers.get(destination) is peer:
                    self._peers[destination] = None
        else:
            self.carried += len(batch)  # a figure: a lost count under a race is harmless
        return future

    def reachable(self, destination: str) -> bool:
        """Whether ``destination`` listens on this node (connecting now if needed)."""
        return self._peer(destination) is not None

    def _peer(self, destination: str) -> _Peer | None:
        with self._lock:
            if destination in self._peers:
                known = self._peers[destination]
                return known if known is not None and not known.broken else None
        peer = self._connect(destination)
        with self._lock:
            if destination in self._peers:  # another thread connected meanwhile
                if peer is not None:
                    peer.connection.close()
                return self._peers[destination]
            self._peers[destination] = peer
        if peer is not None:
            self._request("register", peer.connection)
        return peer

    def _connect(self, destination: str) -> _Peer | None:
        if self._closed:
            return None
        path = self._folder / f"{destination}.sock"
        if not path.exists():
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(_CONNECT_SECONDS)
        try:
            sock.connect(str(path))
        except ConnectionRefusedError:  # left by a process that died: nobody listens
            sock.close()
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        except OSError:
            sock.close()
            return None
        return _Peer(sock, self._request)

    def forget(self, destination: str) -> None:
        """Close the channel to a destination that has ended."""
        with self._lock:
            peer = self._peers.pop(destination, None)
        if peer is not None:
            peer.break_off()

    # The reading thread -----------------------------------------------------------

    def _request(self, what: str, connection: _Connection) -> None:
        with self._lock:
            self._requests.append((what, connection))
        with contextlib.suppress(OSError):
            self._waker.send(b"\0")

    def _run(self) -> None:
        while not self._closed:
            for key, events in self._selector.select():
                try:
                    if key.data is None:
                        self._take_requests()
                    elif key.data == "listener":
                        self._accept()
                    else:
                        if events & selectors.EVENT_WRITE:
                            self._flush(key.data)
                        if events & selectors.EVENT_READ:
                            self._read(key.data)
                except Exception:  # a bug of ours: say so, keep serving the others
                    if not self._closed:
                        traceback.print_exc()

    def _take_requests(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_end.recv(4096)
        with self._lock:
            requests, self._requests = self._requests, []
        for what, connection in requests:
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

    def _watch(self, connection: _Connection, events: int) -> None:
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

    def _unwatch(self, connection: _Connection) -> None:
        for key in list(self._selector.get_map().values()):
            if key.data is connection:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(key.fileobj)

    def _flush(self, connection: _Connection) -> None:
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

    def _accept(self) -> None:
        assert self._listener is not None
        sock, _ = self._listener.accept()
        credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", credentials)
        if uid != os.getuid():  # only the user running Ray (the folder should see to it)
            sock.close()
            return
        connection = _Connection(sock)
        if self._loop is None:
            self._selector.register(sock, selectors.EVENT_READ, connection)
            return
        connection.loop = self._loop
        try:
            self._loop.call_soon_threadsafe(self._read_on_loop, connection)
        except RuntimeError:  # the loop has closed: the isolate is gone
            connection.close()

    def _read_on_loop(self, connection: _Connection) -> None:
        if self._closed or connection.closed:
            connection.close()
            return
        assert connection.loop is not None
        with self._lock:
            self._on_loop.add(connection)
        connection.loop.add_reader(connection.sock, self._read, connection)

    def _read(self, connection: _Connection) -> None:
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
                traceback.print_exc()
        acks = b"".join(_frame((sender, seq)) for sender, seq, _ in frames)
        try:
            if acks and connection.write(acks):
                self._request("flush", connection)
        except OSError:
            self._drop(connection)

    def _drop(self, connection: _Connection) -> None:
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

    def _stop_reading(self, connection: _Connection) -> None:
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
        if self._closed:
            return
        self._closed = True
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()
        with contextlib.suppress(OSError):
            self._folder.rmdir()  # the node's last endpoint: nothing is left in it
        with contextlib.suppress(OSError):
            self._waker.send(b"\0")
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)
        with self._lock:
            peers = [peer for peer in self._peers.values() if peer is not None]
            self._peers.clear()
        for peer in peers:
            peer.break_off()
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


# transmit(destination, route, sender, seq, batch) -> the call's future (as _outbox.Transmit)
_Transmit = Callable[[str, Any, str, int, list[Any]], concurrent.futures.Future[Any]]


def direct_first(endpoint: Endpoint, over_ray: _Transmit) -> _Transmit:
    """A transmit for an outbox: directly where it can (same node, no objects), else over Ray."""

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
            )
            if future is not None:
                return future
        return over_ray(destination, route, sender, seq, batch)

    return transmit
