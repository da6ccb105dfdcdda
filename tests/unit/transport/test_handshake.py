"""Handshake: only a peer that knows the secret gets in, at either end, however it behaves.

Fake peers below speak the protocol by hand (the greeting, the answer, the
proof; see the module's docstring) so that each check of the real ends is
met by exactly the wrong thing.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import hmac
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from rayisolates._transport.handshake import (
    MAGIC,
    SECRET_BYTES,
    Refused,
    new_secret,
    prove_as_client,
    prove_as_server,
)

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
Pair = tuple[socket.socket, socket.socket]  # (the client's end, the server's end)

SECRET = new_secret()
OTHER = new_secret()
NONCE = 32
GREETING = len(MAGIC) + NONCE  # server -> client
ANSWER = 32 + NONCE  # client -> server: a digest, then the client's nonce
PROOF = 32  # server -> client
WAIT = 10.0  # how long a test waits for what must happen; only reached if it does not


def unix_pair() -> Pair:
    client, server = socket.socketpair()
    return client, server


def tcp_pair() -> Pair:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


@pytest.fixture
def connect() -> Iterator[Callable[[Callable[[], Pair]], Pair]]:
    """Connect a pair with the given maker; every pair made is closed after the test."""
    made: list[socket.socket] = []

    def make(maker: Callable[[], Pair]) -> Pair:
        pair = maker()
        made.extend(pair)
        return pair

    yield make
    for sock in made:
        sock.close()


@pytest.fixture(params=[unix_pair, tcp_pair], ids=["unix", "tcp"])
def pair(request: pytest.FixtureRequest, connect: Callable[[Callable[[], Pair]], Pair]) -> Pair:
    """A connected pair over a Unix socketpair or TCP on 127.0.0.1."""
    maker: Callable[[], Pair] = request.param
    return connect(maker)


def in_thread(call: Callable[[], T]) -> concurrent.futures.Future[T]:
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future


def refusal(call: Callable[[], object]) -> str | None:
    """Why ``call`` was refused; ``None`` if it was not (any other exception propagates)."""
    try:
        call()
    except Refused as exc:
        return str(exc)
    return None


def serve(sock: socket.socket, secret: bytes = SECRET, timeout: float = 2.0) -> None:
    """The server end as its caller will use it: the socket is closed when refused."""
    try:
        prove_as_server(sock, secret, timeout)
    except Refused:
        sock.close()
        raise


def digest(secret: bytes, role: bytes, *nonces: bytes) -> bytes:
    return hmac.new(secret, role + b"".join(nonces), hashlib.sha256).digest()


def receive(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(WAIT)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def rest(sock: socket.socket) -> bytes:
    """Everything ``sock`` receives until the other end closes."""
    sock.settimeout(WAIT)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


# The right secret -------------------------------------------------------------------


def test_the_same_secret_lets_both_in_and_the_channel_carries_data(pair: Pair) -> None:
    client, server = pair

    def server_end() -> bytes:
        prove_as_server(server, SECRET)
        server.sendall(b"from the server")  # at once: the client must not have read it
        return receive(server, len(b"from the client"))

    served = in_thread(server_end)
    prove_as_client(client, SECRET)
    client.sendall(b"from the client")
    assert receive(client, len(b"from the server")) == b"from the server"
    assert served.result(timeout=WAIT) == b"from the client"


@pytest.mark.parametrize("mode", [None, 0.0, 5.0], ids=["blocking", "non-blocking", "timeout"])
def test_each_end_gets_its_previous_mode_back(pair: Pair, mode: float | None) -> None:
    client, server = pair
    client.settimeout(mode)
    server.settimeout(mode)
    served = in_thread(lambda: prove_as_server(server, SECRET))
    prove_as_client(client, SECRET)
    served.result(timeout=WAIT)
    assert client.gettimeout() == mode
    assert server.gettimeout() == mode


def test_new_secrets_are_long_and_fresh() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert {len(secret) for secret in secrets} == {SECRET_BYTES}


@pytest.mark.parametrize("side", ["client", "server"])
def test_a_short_secret_is_a_bug_of_the_caller_and_sends_nothing(pair: Pair, side: str) -> None:
    client, server = pair
    prove, own, other = (
        (prove_as_client, client, server) if side == "client" else (prove_as_server, server, client)
    )
    with pytest.raises(ValueError, match="new_secret"):
        prove(own, SECRET[: SECRET_BYTES - 1])
    other.setblocking(False)
    with pytest.raises(BlockingIOError):
        other.recv(1)


# The wrong secret, or none ----------------------------------------------------------


@pytest.mark.parametrize(
    ("client_secret", "server_secret"),
    [(OTHER, SECRET), (SECRET, OTHER)],
    ids=["client-wrong", "server-wrong"],
)
def test_different_secrets_are_refused_at_both_ends(
    pair: Pair, client_secret: bytes, server_secret: bytes
) -> None:
    client, server = pair
    served = in_thread(lambda: refusal(lambda: serve(server, server_secret)))
    # The server checks first and closes; the client learns it from that.
    assert refusal(lambda: prove_as_client(client, client_secret)) == "closed"
    assert served.result(timeout=WAIT) == "wrong secret"


ANSWERS: dict[str, Callable[[bytes], bytes]] = {
    "zeros": lambda server_nonce: bytes(ANSWER),
    "keyed with nothing": lambda server_nonce: digest(b"", b"client", server_nonce) + bytes(NONCE),
    "the right key without the role": lambda server_nonce: (
        hmac.new(SECRET, server_nonce, hashlib.sha256).digest() + bytes(NONCE)
    ),
    "the server's role": lambda server_nonce: (
        digest(SECRET, b"server", server_nonce) + bytes(NONCE)
    ),
}


@pytest.mark.parametrize("answer", list(ANSWERS.values()), ids=list(ANSWERS))
def test_a_client_without_the_secret_is_refused_and_gets_nothing_more(
    pair: Pair, answer: Callable[[bytes], bytes]
) -> None:
    client, server = pair
    served = in_thread(lambda: refusal(lambda: serve(server)))
    greeting = receive(client, GREETING)
    assert greeting.startswith(MAGIC)
    client.sendall(answer(greeting[len(MAGIC) :]))
    assert served.result(timeout=WAIT) == "wrong secret"
    assert rest(client) == b""  # nothing after the greeting, not even a refusal


PROOFS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "keyed with another secret": lambda greeting, answer: digest(
        OTHER, b"server", answer[32:], greeting[len(MAGIC) :]
    ),
    "the client's own digest reflected": lambda greeting, answer: answer[:32],
    "zeros": lambda greeting, answer: bytes(PROOF),
    "the server's nonce": lambda greeting, answer: greeting[len(MAGIC) :],
}


@pytest.mark.parametrize("proof", list(PROOFS.values()), ids=list(PROOFS))
def test_the_client_never_accepts_an_imposter(
    pair: Pair, proof: Callable[[bytes, bytes], bytes]
) -> None:
    client, server = pair

    def imposter() -> None:
        greeting = MAGIC + random.randbytes(NONCE)
        server.sendall(greeting)
        server.sendall(proof(greeting, receive(server, ANSWER)))

    faked = in_thread(imposter)
    assert refusal(lambda: prove_as_client(client, SECRET)) == "wrong secret"
    faked.result(timeout=WAIT)


def test_a_recorded_answer_replayed_to_a_fresh_server_is_refused(
    connect: Callable[[Callable[[], Pair]], Pair],
) -> None:
    client, relay_to_client = connect(unix_pair)
    relay_to_server, server = connect(unix_pair)
    served = in_thread(lambda: prove_as_server(server, SECRET))
    connected = in_thread(lambda: prove_as_client(client, SECRET))
    relay_to_client.sendall(receive(relay_to_server, GREETING))
    recorded = receive(relay_to_client, ANSWER)
    relay_to_server.sendall(recorded)
    relay_to_client.sendall(receive(relay_to_server, PROOF))
    served.result(timeout=WAIT)
    connected.result(timeout=WAIT)  # the recorded exchange let both in

    replayer, fresh_server = connect(unix_pair)
    replayed = in_thread(lambda: refusal(lambda: serve(fresh_server)))
    receive(replayer, GREETING)
    replayer.sendall(recorded)
    assert replayed.result(timeout=WAIT) == "wrong secret"


REFLECTIONS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "the greeting alone": (lambda greeting: greeting, "closed"),
    "the greeting, twice over": (lambda greeting: (greeting * 2)[:ANSWER], "wrong secret"),
    "the server's nonce twice": (lambda greeting: greeting[len(MAGIC) :] * 2, "wrong secret"),
}


@pytest.mark.parametrize(("reflect", "reason"), list(REFLECTIONS.values()), ids=list(REFLECTIONS))
def test_a_challenge_reflected_to_the_server_is_refused(
    pair: Pair, reflect: Callable[[bytes], bytes], reason: str
) -> None:
    client, server = pair
    served = in_thread(lambda: refusal(lambda: serve(server)))
    client.sendall(reflect(receive(client, GREETING)))
    client.shutdown(socket.SHUT_WR)
    assert served.result(timeout=WAIT) == reason


# Garbage ----------------------------------------------------------------------------


def junk_size(rng: random.Random, around: int) -> int:
    """Sizes that matter to a reader of ``around`` bytes: none, short, exact, long."""
    return rng.choice(
        [
            0,
            1,
            rng.randrange(2, around),
            around - 1,
            around,
            around + 1,
            rng.randrange(around, 4096),
        ]
    )


@pytest.mark.parametrize("maker", [unix_pair, tcp_pair], ids=["unix", "tcp"])
def test_random_bytes_from_a_client_are_refused(
    connect: Callable[[Callable[[], Pair]], Pair], maker: Callable[[], Pair]
) -> None:
    for seed in range(200):
        rng = random.Random(seed)
        junk = rng.randbytes(junk_size(rng, ANSWER))
        client, server = connect(maker)
        client.sendall(junk)
        client.shutdown(socket.SHUT_WR)
        reason = refusal(functools.partial(prove_as_server, server, SECRET))
        expected = "closed" if len(junk) < ANSWER else "wrong secret"
        assert reason == expected, f"seed {seed}: {len(junk)} bytes"


@pytest.mark.parametrize("maker", [unix_pair, tcp_pair], ids=["unix", "tcp"])
def test_random_bytes_from_a_server_are_refused(
    connect: Callable[[Callable[[], Pair]], Pair], maker: Callable[[], Pair]
) -> None:
    for seed in range(200):
        rng = random.Random(seed)
        greeted = rng.random() < 0.5  # past the first check, to reach the second
        junk = (MAGIC if greeted else b"") + rng.randbytes(junk_size(rng, GREETING + PROOF))
        client, server = connect(maker)
        server.sendall(junk)
        server.shutdown(socket.SHUT_WR)
        reason = refusal(functools.partial(prove_as_client, client, SECRET))
        if len(junk) < GREETING or (greeted and len(junk) < GREETING + PROOF):
            expected = "closed"
        elif not greeted:
            expected = "bad greeting"
        else:
            expected = "wrong secret"
        assert reason == expected, f"seed {seed}: {len(junk)} bytes"


def test_a_connection_reset_midway_is_refused_as_closed(
    connect: Callable[[Callable[[], Pair]], Pair],
) -> None:
    client, server = connect(tcp_pair)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset, not an orderly end
    assert refusal(lambda: prove_as_server(server, SECRET)) == "closed"


# Too slow ---------------------------------------------------------------------------


def refused_in_time(call: Callable[[], object]) -> str | None:
    """Why ``call`` was refused, checking it ended well within a liveness bound."""
    started = time.monotonic()
    reason = refusal(call)
    assert time.monotonic() - started < 2.0
    return reason


@pytest.mark.parametrize("sent", [0, 1, ANSWER - 1])
def test_a_silent_or_half_done_client_is_cut_at_the_timeout(pair: Pair, sent: int) -> None:
    client, server = pair
    client.sendall(bytes(sent))
    assert refused_in_time(lambda: prove_as_server(server, SECRET, timeout=0.2)) == "timed out"


@pytest.mark.parametrize("sent", [0, 1, GREETING - 1, GREETING, GREETING + PROOF - 1])
def test_a_silent_or_half_done_server_is_cut_at_the_timeout(pair: Pair, sent: int) -> None:
    client, server = pair
    server.sendall((MAGIC + bytes(GREETING + PROOF))[:sent])
    assert refused_in_time(lambda: prove_as_client(client, SECRET, timeout=0.2)) == "timed out"


def trickle(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Send ``data`` a byte at a time, 0.1 s apart, until done or stopped."""
    for byte in data:
        if stop.wait(0.1):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def test_a_trickling_client_is_cut_at_the_deadline(pair: Pair) -> None:
    client, server = pair
    stop = threading.Event()
    trickling = in_thread(lambda: trickle(client, random.randbytes(ANSWER), stop))
    try:
        # A byte every 0.1 s would keep a timeout per read waiting 6.4 s.
        assert refused_in_time(lambda: prove_as_server(server, SECRET, timeout=0.3)) == "timed out"
    finally:
        stop.set()
        trickling.result(timeout=WAIT)


def test_a_trickling_server_is_cut_at_the_deadline(pair: Pair) -> None:
    client, server = pair
    stop = threading.Event()
    greeting = MAGIC + random.randbytes(NONCE)
    trickling = in_thread(lambda: trickle(server, greeting, stop))
    try:
        assert refused_in_time(lambda: prove_as_client(client, SECRET, timeout=0.3)) == "timed out"
    finally:
        stop.set()
        trickling.result(timeout=WAIT)
