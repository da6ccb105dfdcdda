"""Entry points for spawned isolates; workers import them as ``tests.entries``."""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from typing import Any

import numpy as np
import ray

from rayisolates import Isolate, RawReceivePort, ReceivePort, SendPort, TransferableTypedData


async def echo(reply: SendPort[Any]) -> None:
    """Send our port, then echo every message; ``None`` ends with Isolate.exit."""
    port: ReceivePort[Any] = ReceivePort("echo")
    reply.send(port.send_port)
    async for message in port:
        if message is None:
            Isolate.exit(reply, "bye")
        reply.send(message)


def sync_hello(reply: SendPort[Any]) -> None:
    """A synchronous entry point that sends once and returns: the isolate then ends."""
    reply.send(("hello", os.getpid()))


def burst(job: tuple[SendPort[Any], str, int]) -> None:
    """Send ``count`` messages ``(tag, i)`` as fast as possible, then end."""
    reply, tag, count = job
    for i in range(count):
        reply.send((tag, i))


async def interleaved_burst(job: tuple[SendPort[Any], str, int]) -> None:
    """Like ``burst``, but yielding to the event loop between messages."""
    reply, tag, count = job
    for i in range(count):
        reply.send((tag, i))
        if i % 7 == 0:
            await asyncio.sleep(0)


async def count_in_order(reply: SendPort[Any]) -> None:
    """Receive ints until ``None``; report how many arrived and whether in order."""
    port: ReceivePort[Any] = ReceivePort()
    reply.send(port.send_port)
    received = []
    async for message in port:
        if message is None:
            break
        received.append(message)
    port.close()
    reply.send((len(received), received == sorted(received), len(set(received))))


async def forwarder(reply: SendPort[Any]) -> None:
    """Receive ``(target, payload)`` and send ``payload`` to ``target``."""
    port: ReceivePort[Any] = ReceivePort()
    reply.send(port.send_port)
    async for message in port:
        if message is None:
            break
        target, payload = message
        target.send(payload)
    port.close()


def exit_with_array(job: tuple[SendPort[Any], int]) -> None:
    """Hand a large array over with Isolate.exit."""
    reply, count = job
    array = np.arange(count, dtype=np.int64)
    reply.send("before exit")
    Isolate.exit(reply, array)


def send_array_then_return(job: tuple[SendPort[Any], int]) -> None:
    """Send a large array with a plain send, then end at once."""
    reply, count = job
    reply.send(np.full(count, 7, dtype=np.int64))


def transfer_back(job: tuple[SendPort[Any], TransferableTypedData]) -> None:
    """Materialize what arrived, check it, send a new TransferableTypedData back."""
    reply, data = job
    view = data.materialize()
    numbers = np.frombuffer(view, dtype=np.int64)
    answer = TransferableTypedData.from_list([numbers * 2])
    Isolate.exit(reply, (int(numbers.sum()), view.readonly, answer))


def keep_alive_optional(job: tuple[SendPort[Any], bool]) -> None:
    """Open a RawReceivePort; the isolate stays only if it keeps the isolate alive."""
    reply, keep = job
    raw: RawReceivePort[Any] = RawReceivePort(lambda message: reply.send(("raw", message)))
    raw.keep_isolate_alive = keep
    reply.send(raw.send_port)


def report_identity(reply: SendPort[Any]) -> None:
    """Send Isolate.current()'s debug name and the node we run on."""
    isolate = Isolate.current()
    reply.send((isolate.debug_name, ray.get_runtime_context().get_node_id()))


def probe(reply: SendPort[Any]) -> None:
    """Send our debug name and a port; on that port ``"raise"`` raises in the handler (an
    uncaught error), ``"alive?"`` is answered ``"alive"``, ``None`` closes it (we end)."""
    port: ReceivePort[Any] = ReceivePort()

    def handle(message: Any) -> None:
        if message is None:
            port.close()
        elif message == "raise":
            raise ValueError("probe raised")
        else:
            reply.send("alive")

    port.listen(handle)
    reply.send((Isolate.current().debug_name, port.send_port))


async def sleeper(reply: SendPort[Any]) -> None:
    """Stay alive (an open port) until told to stop."""
    port: ReceivePort[Any] = ReceivePort()
    reply.send(port.send_port)
    await anext(port)
    port.close()


def uri_zero() -> None:
    """spawn_uri target without parameters."""


def uri_one(args: list[str]) -> None:
    """spawn_uri target taking args only: it cannot reply; a wrong ``args`` is an error."""
    if args != ["a", "b"]:
        raise ValueError(f"uri_one got {args!r}")


def uri_two(args: list[str], reply: SendPort[Any]) -> None:
    """spawn_uri target taking args and message."""
    reply.send(("uri_two", args))


NOT_CALLABLE = 42


def controlled(reply: SendPort[Any]) -> None:
    """Obey commands sent to our port; echo anything else. Sends (port, pid) first."""
    port: ReceivePort[Any] = ReceivePort("commands")

    def on_message(message: Any) -> None:
        if message == "crash":
            os._exit(3)
        elif message == "segfault":
            ctypes.string_at(0)
        elif message == "raise":
            raise ValueError("raised in a handler")
        elif message == "block":
            reply.send("blocking")
            time.sleep(3600)
        elif message == "exit":
            Isolate.exit(reply, "exited")
        elif isinstance(message, tuple) and message[0] == "kill":
            message[1].kill(priority=Isolate.IMMEDIATE)
            reply.send("kill sent")
        elif isinstance(message, tuple) and message[0] == "watch":
            _, isolate, port_to_tell = message
            isolate.add_on_exit_listener(port_to_tell, "seen by a third")
            reply.send("watching")
        else:
            reply.send(message)

    port.listen(on_message)
    reply.send((port.send_port, os.getpid()))


def busy_with_progress(job: tuple[SendPort[Any], str]) -> None:
    """Compute synchronously, never yielding to the loop, reporting progress until told to stop.

    The stop signal is a file: the isolate's own ports cannot be read while it
    is busy.
    """
    reply, stop_file = job
    step = 0
    while not os.path.exists(stop_file):
        reply.send(("progress", step))
        step += 1
        time.sleep(0.05)


async def array_inspector(job: tuple[SendPort[Any], SendPort[Any] | None]) -> None:
    """Receive one array; report where and how it arrived; pass it on if asked."""
    from rayisolates._transport.stored import recall

    from .support import in_object_store

    reply, forward = job
    port: ReceivePort[Any] = ReceivePort("inspector")
    reply.send(port.send_port)
    array = await anext(port)
    port.close()
    ref = recall(array)
    reply.send(
        {
            "node": ray.get_runtime_context().get_node_id(),
            "sum": int(array.sum()),
            "read_only": not array.flags.writeable,
            "in_store": in_object_store(array),
            "ref": ref.hex() if ref is not None else None,
        }
    )
    if forward is not None:
        forward.send(array)


def exit_with_array_and_node(job: tuple[SendPort[Any], int]) -> None:
    """Hand a large array and our node over with Isolate.exit."""
    reply, count = job
    Isolate.exit(reply, (ray.get_runtime_context().get_node_id(), np.ones(count, dtype=np.int64)))


async def failing_task(reply: SendPort[Any]) -> None:
    """Start a task that fails with nobody awaiting it, then stay alive on a port."""
    port: ReceivePort[Any] = ReceivePort()

    async def doomed() -> None:
        raise KeyError("raised in a task nobody awaited")

    asyncio.get_running_loop().create_task(doomed())
    reply.send(port.send_port)
    await anext(port)
    port.close()


async def cutting_relay(reply: SendPort[Any]) -> None:
    """Send our port; the first message is a partner port. Then, for each int ``i``:
    ``("a", i)`` to ``reply`` and ``i`` to the partner; ``"cut"`` closes this
    isolate's direct channels (every one, both ways), as a broken socket would;
    ``"sever"`` breaks every connection they have, and they come back later.
    """
    from rayisolates._context.context import current

    port: ReceivePort[Any] = ReceivePort("cutting-relay")
    reply.send(port.send_port)
    partner: SendPort[Any] = await anext(port)
    async for message in port:
        if message == "cut":
            endpoint = current().endpoint
            assert endpoint is not None
            endpoint.close()
        elif message == "sever":  # every connection breaks, as in a network fault; they return
            endpoint = current().endpoint
            assert endpoint is not None
            endpoint.sever()
        elif message is None:
            break
        else:
            reply.send(("a", message))
            partner.send(message)
    port.close()


def direct_sockets() -> list[str]:
    """The sockets in this node's direct-channel folder (isolate ids)."""
    from rayisolates._transport.direct import direct_folder

    folder = direct_folder(ray.get_runtime_context().get_node_id())
    return sorted(path.stem for path in folder.glob("*.sock")) if folder else []


@ray.remote(num_cpus=0)
class RawChild:
    """A plain actor that calls its owner back once, as an isolate calls its supervisor."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner

    def hello(self) -> int:
        ray.get(self.owner.ping.remote())
        return os.getpid()


@ray.remote(num_cpus=0)
class RawOwner:
    """Creates and kills plain actors, as the supervisor creates and ends isolates."""

    def __init__(self) -> None:
        self.children: list[Any] = []

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> None:
        return None

    def make(self, count: int) -> list[Any]:
        me = ray.get_runtime_context().current_actor
        self.children = [RawChild.remote(me) for _ in range(count)]  # type: ignore[attr-defined]
        return self.children

    def kill(self) -> None:
        for child in self.children:
            ray.kill(child)
        self.children = []


def die_once(marker: str) -> str:
    """A pool task that SIGKILLs its member the first time (``marker`` records it)."""
    import signal

    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def always_die() -> None:
    """A poison task: SIGKILLs whatever member runs it."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def member_pid(delay: float = 0.0) -> int:
    """The pid of the member running this (after ``delay`` seconds)."""
    time.sleep(delay)
    return os.getpid()


async def pool_inside(reply: SendPort[Any]) -> None:
    """Use a pool from inside a spawned isolate; send what it computed."""
    from rayisolates import IsolatePool

    async with IsolatePool(2) as pool:
        squares = [value async for value in pool.map(lambda x: x * x, range(20))]
        reply.send(squares)


def node_then_hold(job: tuple[SendPort[Any], str]) -> str:
    """A pool task: tell which node runs it; on ``doomed`` hold on until that node is gone."""
    reply, doomed = job
    here = str(ray.get_runtime_context().get_node_id())
    reply.send(here)
    while here == doomed:
        time.sleep(0.1)
    return here


async def hold_until_released(reply: SendPort[Any]) -> int:
    """A pool task: send our pid, node and a port; return our pid once a message arrives."""
    port: ReceivePort[Any] = ReceivePort("release")
    node = str(ray.get_runtime_context().get_node_id())
    reply.send((os.getpid(), node, port.send_port))
    await anext(port)
    port.close()
    return os.getpid()


def member_only_instance() -> Any:
    """An instance of a class from a module that exists only in this process."""
    import sys
    import types

    module = types.ModuleType("made_in_the_member")
    exec("class Thing:\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    return module.Thing()


# Stream producers ------------------------------------------------------------------------


def count_up(n: int) -> Any:
    """A sync generator: 0 .. n-1."""
    yield from range(n)


async def count_up_async(n: int) -> Any:
    """An async generator: 0 .. n-1, letting the loop run between items."""
    for i in range(n):
        if i % 100 == 0:
            await asyncio.sleep(0)
        yield i


def count_then_fail(n: int) -> Any:
    """n items, then a ValueError."""
    yield from range(n)
    raise ValueError(f"failed after {n}")


def endless_reporting(report: SendPort[Any]) -> Any:
    """Endless items; on close, report how many were produced (its finally runs)."""
    produced = 0
    try:
        while True:
            yield produced
            produced += 1
    finally:
        report.send(("closed", produced))


def stuck_after_one(report: SendPort[Any]) -> Any:
    """One item, then stuck in sync code that reads no messages."""
    report.send(("pid", os.getpid()))
    yield "one"
    time.sleep(3600)
    yield "never"


async def stuck_after_one_async(report: SendPort[Any]) -> Any:
    """``stuck_after_one`` as an async generator that blocks its loop after the first item."""
    report.send(("pid", os.getpid()))
    yield "one"
    time.sleep(3600)
    yield "never"


def die_after(n: int) -> Any:
    """n items, then the process dies."""
    import signal

    yield from range(n)
    os.kill(os.getpid(), signal.SIGKILL)
    yield "never"


def arrays(count: int, megabytes: int) -> Any:
    """``count`` arrays of ``megabytes`` MB each, item i filled with i."""
    for i in range(count):
        yield np.full(megabytes * 1024 * 1024 // 8, i, dtype=np.int64)


def node_items(n: int) -> Any:
    """n items naming the node that made them."""
    node = str(ray.get_runtime_context().get_node_id())
    for i in range(n):
        yield (node, i)


def self_then_arrays(sizes: list[int]) -> Any:
    """The producing isolate itself and a ref it owns (see ``owned_ref``), then one array
    of each size (bytes), item i filled with i + 1."""
    yield Isolate.current(), owned_ref()
    for i, size in enumerate(sizes):
        yield sized_array(size, i + 1)


def owned_ref() -> Any:
    """A ref to an object in the object store, owned by this process: once this process
    has ended, reading it fails (how a test knows Ray has noticed the end)."""
    return ray.put(np.zeros(200_000 // 8, dtype=np.int64))


def sized_array(size: int, fill: int) -> Any:
    """An int64 array of about ``size`` bytes, filled with ``fill``."""
    return np.full(max(1, size // 8), fill, dtype=np.int64)


def arrays_then_end(job: tuple[SendPort[Any], list[int], str]) -> None:
    """Send a ref this isolate owns (see ``owned_ref``), then one array of each size (item
    i filled with i + 1), then end: ``exit`` hands the last one over by Isolate.exit,
    ``return`` sends it and returns."""
    reply, sizes, how = job
    reply.send(owned_ref())
    for i, size in enumerate(sizes[:-1]):
        reply.send(sized_array(size, i + 1))
    last = sized_array(sizes[-1], len(sizes))
    if how == "exit":
        Isolate.exit(reply, last)
    reply.send(last)


def report_array(job: tuple[SendPort[Any], Any]) -> None:
    """Tell what array arrived: ``("child", sum, size)``."""
    reply, array = job
    reply.send(("child", int(array.sum()), int(array.size)))


def spawn_then_exit(job: tuple[SendPort[Any], int]) -> None:
    """Send a ref this isolate owns, spawn a child with an array of ``size`` bytes (filled
    with 7) without waiting for it, and exit."""
    reply, size = job
    reply.send(owned_ref())
    Isolate.spawn(report_array, (reply, sized_array(size, 7)))
    Isolate.exit()


def listen_then_exit(job: tuple[SendPort[Any], Isolate, int]) -> None:
    """Send a ref this isolate owns, ask ``target`` to send an array of ``size`` bytes
    (filled with 9) to ``reply`` when it ends, and exit."""
    reply, target, size = job
    reply.send(owned_ref())
    target.add_on_exit_listener(reply, sized_array(size, 9))
    Isolate.exit()


def flood_stored(job: tuple[SendPort[Any], int]) -> None:
    """Send ``count`` messages large enough for the object store (the receiver's transport
    fetches and dispatches them on its event loop), then end."""
    reply, count = job
    for i in range(count):
        reply.send((i, bytes(120 * 1024)))


async def answer_to(reply: SendPort[Any]) -> None:
    """Send our port, then answer each ``(i, port)`` with ``(i,)`` to that port; ``None``
    ends."""
    port: ReceivePort[Any] = ReceivePort("answer")
    reply.send(port.send_port)
    async for message in port:
        if message is None:
            break
        message[1].send((message[0],))
    port.close()


def flood_mixed(job: tuple[SendPort[Any], int, int]) -> None:
    """Send ``count`` messages ``(i, padding)``, a seeded mix of small ones and ones large
    enough for the object store (the receiver's transport fetches and dispatches those on
    its event loop), then end."""
    import random

    reply, count, seed = job
    rng = random.Random(seed)
    for i in range(count):
        reply.send((i, bytes(120 * 1024 if rng.random() < 0.6 else 8)))


async def answer_each(reply: SendPort[Any]) -> None:
    """Send our port, then answer each ``(tag, i, port, padding)`` with ``(tag, i)`` to that
    port; ``None`` ends."""
    port: ReceivePort[Any] = ReceivePort("answer")
    reply.send(port.send_port)
    async for message in port:
        if message is None:
            break
        tag, i, back, _ = message
        back.send((tag, i))
    port.close()


class _LockedTalker:
    """See :func:`locked_talker`."""

    def __init__(self, report: SendPort[Any], other: SendPort[Any], rounds: int, seed: int):
        import random
        import threading

        self.report, self.other = report, other
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.got: dict[str, list[Any]] = {"own": [], "answers": [], "inbox": []}
        self.expected = {"own": 2 * rounds, "answers": 2 * rounds, "inbox": rounds}
        self.own: RawReceivePort[Any] = RawReceivePort(lambda m: self.record("own", m), "own")
        self.answers: RawReceivePort[Any] = RawReceivePort(
            lambda m: self.record("answers", m), "answers"
        )
        self.inbox: RawReceivePort[Any] = RawReceivePort(self.on_inbox, "inbox")

    def record(self, kind: str, message: Any) -> None:
        with self.lock:
            self.got[kind].append(message)
            if all(len(self.got[k]) == self.expected[k] for k in self.got):
                self.done.set()

    def send(self, tag: str, i: int) -> None:
        """Under the lock: one message to the own port and one to the answers port, each
        over a carrier chosen at random."""
        carrier = self.rng.choice(["own", "main", "other", "stored"])
        if carrier == "main":
            self.report.send(("main", tag, i))
            self.answers.send_port.send((tag, i))
        elif carrier in ("other", "stored"):
            padding = bytes(120 * 1024 if carrier == "stored" else 8)
            self.other.send((tag, i, self.answers.send_port, padding))
        else:
            self.answers.send_port.send((tag, i))
        self.own.send_port.send((tag, i))

    def on_inbox(self, message: Any) -> None:
        with self.lock:
            self.send("handler", message)
        self.record("inbox", message)

    def under_the_lock(self, rounds: int) -> None:
        for i in range(rounds):
            with self.lock:
                self.send("thread", i)

    def finish(self) -> None:
        self.done.wait(60)
        with self.lock:
            self.report.send(("done", {k: list(v) for k, v in self.got.items()}))
        for port in (self.own, self.answers, self.inbox):
            port.close()


def locked_talker(job: tuple[SendPort[Any], SendPort[Any], int, int]) -> None:
    """Inside a spawned isolate: port handlers that take a lock and send over every carrier
    (this isolate's own port, the main isolate, another isolate, the object store), while
    a thread of the isolate, holding that lock, sends over them too. Reports to ``report``
    what each port got, once ``rounds`` messages from each have been answered."""
    import threading

    report, other, rounds, seed = job
    talker = _LockedTalker(report, other, rounds, seed)
    report.send(("inbox", talker.inbox.send_port))
    threading.Thread(target=talker.under_the_lock, args=(rounds,), daemon=True).start()
    threading.Thread(target=talker.finish, daemon=True).start()


def carry_out(
    isolate: Isolate, worker: SendPort[Any], pongs: SendPort[Any], steps: list[Any]
) -> None:
    """Carry out a script of sends and control records on ``isolate``, without waiting.

    Each step is ``("send", message)`` to ``worker``, ``("pause", capability)``,
    ``("resume", capability)`` or ``("ping", response)`` (to ``pongs``,
    ``BEFORE_NEXT_EVENT``).
    """
    for action, value in steps:
        if action == "send":
            worker.send(value)
        elif action == "pause":
            isolate.pause(value)
        elif action == "resume":
            isolate.resume(value)
        else:
            isolate.ping(pongs, value, priority=Isolate.BEFORE_NEXT_EVENT)


def controller(reply: SendPort[Any]) -> None:
    """Sends our port, then carries out each ``(isolate, worker, pongs, steps)`` sent there."""
    port: ReceivePort[Any] = ReceivePort("scripts")
    port.listen(lambda script: carry_out(*script))
    reply.send(port.send_port)


def carried() -> int:
    """How many messages this process has written to direct channels (-1: it has none)."""
    from rayisolates._context.context import current

    endpoint = current().endpoint
    return -1 if endpoint is None else endpoint.carried


async def answer_on_given_port(reply: SendPort[Any]) -> None:
    """Sends our port; each ``(value, port)`` is answered on ``port`` (Dart's request/reply);
    ``("carried", port)`` with :func:`carried`."""
    port: ReceivePort[Any] = ReceivePort("requests")
    reply.send(port.send_port)
    async for value, answer_to in port:
        answer_to.send(carried() if value == "carried" else value)


async def ask_many(job: tuple[SendPort[Any], int, SendPort[Any]]) -> None:
    """Send ``target`` n requests, each with our reply port, one at a time; report whether
    every answer was right, and :func:`carried`."""
    target, count, report = job
    answers: ReceivePort[Any] = ReceivePort("answers")
    right = 0
    for i in range(count):
        target.send((i, answers.send_port))
        right += await anext(answers) == i
    answers.close()
    report.send((right == count, carried()))


def pid_then_block(reply: SendPort[Any]) -> None:
    """A pool task: send our pid, then block in sync code (only a kill ends it)."""
    reply.send(os.getpid())
    time.sleep(600)


def touch(path: str) -> str:
    """A pool task that leaves a mark: the file ``path``."""
    with open(path, "w"):
        pass
    return path


def exit_at_once(reply: Any) -> None:
    """An entry point that ends its process before anything else: its spawn still
    succeeds (the entry runs only after the spawner heard the isolate started)."""
    os._exit(3)
