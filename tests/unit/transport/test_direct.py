"""Direct channels: batches over Unix sockets, acknowledged; a broken channel falls back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import pickle
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rayisolates._transport.dial import CONNECT_SECONDS, dial
from rayisolates._transport.direct import (
    Endpoint,
    Fallback,
    direct_first,
    direct_folder,
    portable,
    sweep,
)
from rayisolates._transport.frames import frame
from rayisolates._transport.handshake import Refused, new_secret
from rayisolates._transport.inbox import Inbox
from rayisolates._transport.outbox import Outbox
from rayisolates._transport.rpc import when_done

pytestmark = pytest.mark.timeout(60)

NODE = "0123456789abcdef0123"
SECRET = new_secret()


@pytest.fixture
def folder(socket_base: Path) -> Path:
    found = direct_folder(NODE, base=str(socket_base))
    assert found is not None
    return found


class Received:
    """What an endpoint's ``on_batch`` got, thread-safe, with a way to hold it back."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, int, list[Any]]] = []
        self.lock = threading.Lock()
        self.open = threading.Event()
        self.open.set()
        self.arrived = threading.Event()

    def __call__(self, sender: str, seq: int, items: list[Any]) -> None:
        self.arrived.set()
        self.open.wait()
        with self.lock:
            self.batches.append((sender, seq, items))


def item(value: Any) -> tuple[int, int, Any, None]:
    return (1, 0, value, None)  # port 1, INLINE


def done_now(result: Any = "over ray") -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_result(result)
    return future


@pytest.fixture
def endpoints(folder: Path) -> Iterator[tuple[Endpoint, Endpoint, Received]]:
    received = Received()
    sender, receiver = (
        Endpoint(folder, "a", secret=SECRET),
        Endpoint(folder, "b", received, secret=SECRET),
    )
    yield sender, receiver, received
    received.open.set()
    sender.close()
    receiver.close()


def test_batches_arrive_in_order_and_are_acknowledged(
    endpoints: tuple[Endpoint, Endpoint, Received],
) -> None:
    sender, _, received = endpoints
    futures = [
        sender.send("b", "a", seq, [item(seq)], lambda: pytest.fail("no fallback"))
        for seq in range(200)
    ]
    assert all(future is not None for future in futures)
    for future in futures:
        assert future is not None and future.result(10) is None
    assert received.batches == [("a", seq, [item(seq)]) for seq in range(200)]


def test_a_destination_elsewhere_gets_nothing_directly(folder: Path) -> None:
    sender = Endpoint(folder, "a", secret=SECRET)
    try:
        assert sender.send("elsewhere", "a", 0, [item(0)], done_now) is None
        assert not sender.reachable("elsewhere")
    finally:
        sender.close()


def test_a_broken_channel_sends_what_was_not_acknowledged_over_ray(
    endpoints: tuple[Endpoint, Endpoint, Received],
) -> None:
    sender, receiver, received = endpoints
    assert sender.send("b", "a", 0, [item(0)], done_now) is not None
    assert received.arrived.wait(10)
    received.open.clear()  # the receiver takes batch 1, then hangs before acknowledging
    received.arrived.clear()
    fallbacks: list[int] = []

    def over_ray(seq: int) -> Fallback:
        def fallback() -> concurrent.futures.Future[Any]:
            fallbacks.append(seq)
            return done_now()

        return fallback

    held = [sender.send("b", "a", seq, [item(seq)], over_ray(seq)) for seq in (1, 2)]
    assert received.arrived.wait(10)  # batch 1 is in the receiver's hands, unacknowledged
    receiver.close()  # its socket closes under the waiting batches
    for future in held:
        assert future is not None and future.result(10) == "over ray"
    assert sorted(fallbacks) == [1, 2]
    assert sender.send("b", "a", 3, [item(3)], done_now) is None  # Ray from now on


def test_large_batches_both_ways_at_once_do_not_block(folder: Path) -> None:
    got_a, got_b = Received(), Received()
    a, b = Endpoint(folder, "a", got_a, secret=SECRET), Endpoint(folder, "b", got_b, secret=SECRET)
    big = [item(os.urandom(256 * 1024)) for _ in range(4)]  # 1 MB a batch
    try:

        def burst(me: Endpoint, me_id: str, other: str) -> list[Any]:
            return [me.send(other, me_id, seq, big, done_now) for seq in range(30)]

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(burst, a, "a", "b"), pool.submit(burst, b, "b", "a")]
            for run in runs:
                for future in run.result(30):
                    assert future is not None and future.result(30) is None
        assert len(got_a.batches) == len(got_b.batches) == 30
        assert got_b.batches[7] == ("a", 7, big)
    finally:
        a.close()
        b.close()


def test_a_socket_nobody_listens_on_is_removed(folder: Path) -> None:
    stale = folder / "gone.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(stale))  # bound, never listening: what a killed process leaves
    left.close()
    sender = Endpoint(folder, "a", secret=SECRET)
    try:
        assert sender.send("gone", "a", 0, [item(0)], done_now) is None
        assert not stale.exists()
    finally:
        sender.close()


def test_only_batches_without_ray_objects_are_portable() -> None:
    assert portable([(1, 0, 5, None), (1, 1, b"pickle", [])])
    assert not portable([(1, 1, b"pickle", ["anything but an actor handle"])])
    assert not portable([(1, 0, 5, None), (1, 2, "an object ref", None)])


def test_a_folder_others_can_enter_is_not_used(tmp_path: Path) -> None:
    root = tmp_path / f"rayisolates-{os.getuid()}"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    assert direct_folder(NODE, base=str(tmp_path)) is None


def test_the_folder_is_private(folder: Path) -> None:
    for path in (folder, folder.parent):
        assert path.stat().st_mode & 0o777 == 0o700
        assert path.stat().st_uid == os.getuid()


INTRUDER = """
import os, socket, struct, sys, pickle
os.setgid(65534); os.setuid(65534)
path = sys.argv[1]
try:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
except PermissionError:
    print("REFUSED AT THE FOLDER")
    sys.exit(0)
body = pickle.dumps(("intruder", 0, [(1, 0, "injected", None)]))
try:
    sock.sendall(struct.pack("!I", len(body)) + body)
    print("CLOSED" if sock.recv(100) == b"" else "ACKNOWLEDGED")
except OSError:
    print("CLOSED")
"""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
@pytest.mark.parametrize("opened", [False, True], ids=["private folder", "folder opened"])
def test_another_user_cannot_inject_messages(opened: bool) -> None:
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # other users may pass through /tmp/...
    base.chmod(0o755)
    folder = direct_folder(NODE, base=str(base))
    assert folder is not None
    received = Received()
    receiver = Endpoint(folder, "b", received, secret=SECRET)
    if opened:  # even with the folder and socket opened to all, the peer's uid is checked
        for path in (folder.parent, folder, folder / "b.sock"):
            path.chmod(0o777)
    answer = subprocess.run(
        [sys.executable, "-c", INTRUDER, str(folder / "b.sock")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    receiver.close()
    shutil.rmtree(base)
    assert answer == ("CLOSED" if opened else "REFUSED AT THE FOLDER")
    assert received.batches == []


def endpoint_over(
    carrier: str,
    folder: Path,
    name: str,
    take: Any = None,
    to: Any = None,
) -> Endpoint:
    """An endpoint that receives (``take``) or sends over Unix sockets or TCP; a TCP sender
    finds ``to()``'s address as ``locate`` would over Ray. Broken channels retry soon."""
    if carrier == "unix":
        return Endpoint(folder, name, take, secret=SECRET, retry_seconds=0.01)
    return Endpoint(
        None,
        name,
        take,
        secret=SECRET,
        node=name,
        host="127.0.0.1" if take is not None else None,
        locate=None if to is None else lambda destination, route: done_now(to().address),
        retry_seconds=0.01,
    )


@pytest.mark.parametrize("carrier", ["unix", "tcp"])
@pytest.mark.parametrize("seed", range(int(os.environ.get("DIRECT_SEEDS", "30"))))
def test_random_breaks_lose_repeat_and_reorder_nothing(
    folder: Path, seed: int, carrier: str
) -> None:
    """Outboxes over direct channels, with channels broken at random and a slow, lossy "Ray".

    The fallback path delivers after a random delay and sometimes twice (as a
    repeated call would); the receiver's inbox must still see every
    sender's messages once, in order. Over TCP the senders find the receiver
    through ``locate`` (as over Ray) and connect on a thread of their own,
    the batches meanwhile going the slow way; broken channels come back
    after a short retry time.
    """
    rng = random.Random(seed)
    dispatched: dict[str, list[int]] = {}
    lock = threading.Lock()

    def dispatch(batch: list[tuple[str, int]]) -> None:
        for sender, value in batch:
            dispatched.setdefault(sender, []).append(value)

    inbox: Inbox[tuple[str, int]] = Inbox(dispatch)

    slowness = random.Random(seed + 1000)  # for the receiver's thread

    def take(sender: str, seq: int, items: list[Any]) -> None:
        if slowness.random() < 0.2:  # batches stay unacknowledged for a while
            time.sleep(0.002)
        with lock:
            inbox.receive(sender, seq, [(sender, value) for _, _, value, _ in items])

    def receiver() -> Endpoint:
        return endpoint_over(carrier, folder, "b", take)

    def sender(name: str) -> Endpoint:
        return endpoint_over(carrier, folder, name, to=lambda: receivers[-1])

    receivers = [receiver()]
    slow_ray = concurrent.futures.ThreadPoolExecutor(4)

    def over_ray(
        destination: str, route: Any, sender: str, seq: int, batch: list[Any]
    ) -> concurrent.futures.Future[Any]:
        delay, twice = rng.random() * 0.005, rng.random() < 0.3

        def deliver() -> None:
            time.sleep(delay)
            for _ in range(2 if twice else 1):
                take(sender, seq, batch)

        return slow_ray.submit(deliver)

    senders = [sender(f"a{i}") for i in range(3)]
    outboxes: list[Outbox[Any]] = [
        Outbox(f"a{i}", direct_first(endpoint, over_ray), on_done=when_done)
        for i, endpoint in enumerate(senders)
    ]
    count = 400
    try:
        for value in range(count):
            if rng.random() < 0.05:
                time.sleep(0.001)  # time for connections being made (TCP) to be made
            i = rng.randrange(3)
            outboxes[i].add("b", "b's route", item(value))
            if rng.random() < 0.03:
                senders[i].forget("b")  # the sender drops the channel; the next batch reconnects
            if rng.random() < 0.01:  # the receiving side drops every channel, unread frames too
                receivers[-1].close()
                receivers.append(receiver())
            if rng.random() < 0.01:  # a network fault: every connection, both ways
                receivers[-1].sever()

        async def drained() -> None:
            await asyncio.gather(*(outbox.drain() for outbox in outboxes))

        asyncio.run(asyncio.wait_for(drained(), 30))  # every batch delivered or acknowledged
        assert not any(outbox.busy() for outbox in outboxes)
        with lock:
            merged = sorted(v for values in dispatched.values() for v in values)
            assert merged == list(range(count)), "lost or repeated"
            for values in dispatched.values():
                assert values == sorted(values), "reordered"
        assert sum(endpoint.carried for endpoint in senders) > 0, "never direct"
    finally:
        for endpoint in [*senders, *receivers]:
            endpoint.close()
        slow_ray.shutdown()


def test_sweep_removes_only_sockets_nobody_listens_on(
    endpoints: tuple[Endpoint, Endpoint, Received], folder: Path
) -> None:
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(folder / "killed.sock"))
    left.close()
    assert sweep(folder, min_age=0) == 1
    assert sorted(path.name for path in folder.iterdir()) == ["b.sock"]


def test_a_loop_can_read_what_arrives_while_acknowledgements_stay_on_the_thread(
    folder: Path,
) -> None:
    """Batches to ``b`` are taken on b's loop; b's own batches are acknowledged while it blocks."""
    loop = asyncio.new_event_loop()
    taken: list[tuple[str, int, bool]] = []
    b_ready = threading.Event()

    def take(sender: str, seq: int, items: list[Any]) -> None:
        taken.append((sender, seq, asyncio.get_running_loop() is loop))

    a_received = Received()
    a = Endpoint(folder, "a", a_received, secret=SECRET)
    b = Endpoint(folder, "b", take, loop=loop, secret=SECRET)
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    try:
        loop.call_soon_threadsafe(b_ready.set)
        runner.start()
        assert b_ready.wait(10)
        futures = [a.send("b", "a", seq, [item(seq)], done_now) for seq in range(20)]
        for future in futures:
            assert future is not None and future.result(10) is None
        assert taken == [("a", seq, True) for seq in range(20)]
        blocked = threading.Event()
        loop.call_soon_threadsafe(blocked.wait)  # b's loop is busy from now on
        own = b.send("a", "b", 0, [item("from b")], done_now)
        assert own is not None and own.result(10) is None  # acknowledged all the same
        blocked.set()
    finally:
        a.close()
        loop.call_soon_threadsafe(b.close)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()


def test_the_last_endpoint_to_close_removes_the_nodes_folder(socket_base: Path) -> None:
    folder = direct_folder(NODE, base=str(socket_base))
    assert folder is not None
    first, second = (
        Endpoint(folder, "a", Received(), secret=SECRET),
        Endpoint(folder, "b", Received(), secret=SECRET),
    )
    first.close()
    assert sorted(path.name for path in folder.iterdir()) == ["b.sock"]
    second.close()
    assert not folder.exists()
    again = direct_folder(NODE, base=str(socket_base))  # the next isolate on the node makes it anew
    assert again == folder and folder.is_dir()
    third = Endpoint(folder, "c", Received(), secret=SECRET)
    third.close()
    assert not folder.exists()


def test_an_endpoint_binds_even_if_the_folder_went_away_meanwhile(socket_base: Path) -> None:
    folder = direct_folder(NODE, base=str(socket_base))
    assert folder is not None
    folder.rmdir()  # as by the node's last endpoint closing between direct_folder and bind
    endpoint = Endpoint(folder, "a", Received(), secret=SECRET)
    assert (folder / "a.sock").exists()
    endpoint.close()


def test_sweep_removes_stale_sockets_and_empty_folders_of_other_nodes(socket_base: Path) -> None:
    here = direct_folder(NODE, base=str(socket_base))
    gone = direct_folder("gone-node-00000000", base=str(socket_base))
    fresh = direct_folder("fresh-node-0000000", base=str(socket_base))
    live = direct_folder("live-node-00000000", base=str(socket_base))
    assert here and gone and fresh and live
    long_ago = time.time() - 3600
    for node, name in ((gone, "dead"), (fresh, "starting"), (here, "killed")):
        left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        left.bind(str(node / f"{name}.sock"))
        left.close()
        if name != "starting":
            os.utime(node / f"{name}.sock", (long_ago, long_ago))
    listening = Endpoint(live, "alive", Received(), secret=SECRET)
    os.utime(live / "alive.sock", (long_ago, long_ago))
    try:
        assert sweep(here) == 2  # dead and killed; the fresh one may not listen yet
        assert not gone.exists()
        assert [path.name for path in fresh.iterdir()] == ["starting.sock"]
        assert [path.name for path in live.iterdir()] == ["alive.sock"]
        assert here.is_dir() and not list(here.iterdir())  # its own node's folder stays
    finally:
        listening.close()


class Bomb:
    """Unpickled, it leaves a file behind: what an intruder's frame would do if it were read."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "pickle ran"))


def intrusion(rng: random.Random, marker: Path) -> bytes:
    """What a stranger sends first: random bytes, a frame with a bomb, or a bomb after a
    greeting-sized run of bytes (as if it could skip the handshake)."""
    bomb = frame(("stranger", 0, [(1, 1, pickle.dumps(Bomb(marker)), None)]))
    return rng.choice(
        [
            rng.randbytes(rng.randrange(1, 200)),
            bomb,
            rng.randbytes(64) + bomb,
            b"\0" * rng.randrange(1, 100),
            b"",  # connects and says nothing: a half-open connection
        ]
    )


@pytest.mark.parametrize("carrier", ["unix", "tcp"])
def test_strangers_are_refused_before_a_byte_is_unpickled(
    folder: Path, tmp_path: Path, carrier: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Connections without the secret (random bytes, pickles, nothing at all, a wrong
    secret) are refused and logged; nothing they sent is read; the endpoint goes on
    serving the cluster's own processes meanwhile."""
    received = Received()
    receiver = endpoint_over(carrier, folder, "b", received)
    where: Path | tuple[str, int] = folder / "b.sock"
    if carrier == "tcp":
        assert receiver.address is not None
        where = (receiver.address[1], receiver.address[2])
    sender = endpoint_over(carrier, folder, "a", to=lambda: receiver)
    marker = tmp_path / "marker"
    rng = random.Random(0)
    strangers = []
    try:
        for attempt in range(40):
            family = socket.AF_UNIX if isinstance(where, Path) else socket.AF_INET
            stranger = socket.socket(family, socket.SOCK_STREAM)
            stranger.connect(str(where) if isinstance(where, Path) else where)
            stranger.sendall(intrusion(rng, marker))
            strangers.append(stranger)  # left open: refused at the handshake's deadline
            if attempt % 10 == 0:
                with pytest.raises(Refused):
                    dial(where, new_secret(), timeout=2)  # the wrong secret
        assert sender.reachable("b", "b's route") in (True, None)
        deadline = time.monotonic() + 10
        while not sender.reachable("b", "b's route") and time.monotonic() < deadline:
            time.sleep(0.01)
        future = sender.send("b", "a", 0, [item("for b")], done_now, "b's route")
        assert future is not None and future.result(10) is None  # served all the while
        for stranger in strangers:
            stranger.settimeout(5)
            with contextlib.suppress(OSError):
                while stranger.recv(4096):  # the greeting, then the end: nothing else
                    pass
    finally:
        for stranger in strangers:
            stranger.close()
        sender.close()
        receiver.close()
    assert received.batches == [("a", 0, [item("for b")])]
    assert not marker.exists()
    refusals = [r for r in caplog.records if "refused a connection" in r.getMessage()]
    assert 1 <= len(refusals) <= 2  # logged, not once per stranger


def test_a_peer_that_cannot_be_reached_costs_a_bounded_wait_off_the_senders_thread() -> None:
    """A destination whose address answers nothing (as behind a firewall that lets the
    connection in, or a process that stopped): every batch goes over Ray at once, the
    sending thread never waits, and after the connect timeout the pair is on Ray."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never speaks
    address = ("elsewhere", "127.0.0.1", silent.getsockname()[1])
    sender = Endpoint(
        None, "a", secret=SECRET, node="here", locate=lambda destination, route: done_now(address)
    )
    try:
        started = time.monotonic()
        for seq in range(100):
            assert sender.send("b", "a", seq, [item(seq)], done_now, "b's route") is None
        # Still trying: none of those sends waited for the connection to fail.
        assert sender.reachable("b", "b's route") is None
        deadline = time.monotonic() + 10
        while sender.reachable("b", "b's route") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sender.reachable("b", "b's route") is False
        assert time.monotonic() - started < 2 * CONNECT_SECONDS + 5  # bounded (a liveness bound)
    finally:
        sender.close()
        silent.close()


def test_an_address_that_is_not_ours_leaves_the_endpoint_on_its_node(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ray may give a node an address this process cannot listen on (NAT): then others
    reach it over Ray, said once, and the endpoint still works."""
    endpoint = Endpoint(None, "b", Received(), secret=SECRET, node="n", host="203.0.113.7")
    try:
        assert endpoint.address is None
        assert any("cannot listen on 203.0.113.7" in r.getMessage() for r in caplog.records)
    finally:
        endpoint.close()
