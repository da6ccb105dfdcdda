"""A driver for ``test_netns.py``: isolates on three nodes talk while a node's link is cut.

Run inside the head's namespace (``netns-cluster.sh run head python -m
tests.cluster.netns_talk``). Talkers on the head, on node ``a`` and on node
``b``, and the main isolate, each send numbered messages to every talker
(themselves included), a few every 10 ms. Two runs wait on node ``b``: one
pinned there, one only preferring it, with retries.

The driver and the test take turns over stdin and stdout, one JSON line
each: the driver says ``ready``; the test cuts ``b``'s link (and perhaps
heals it) and says what it did; the driver waits for ``b``'s talker to be
declared dead and for the runs' outcomes (or, after a heal, lets traffic
flow a while), stops every living talker, and prints what each receiver got
from each sender.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rayisolates import Isolate, IsolateFuture, ReceivePort, RemoteError, SendPort, init

PACE_SECONDS = 0.01
BURST = 3  # messages to each peer per beat
NAMES = ("head", "a", "b")


class Talker:
    """Sends numbered messages to its peers, and records what it gets from each."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inbox: ReceivePort[Any] = ReceivePort(f"talker-{name}")
        self.peers: dict[str, SendPort[Any]] = {}
        self.sent: dict[str, int] = {}
        self.got: dict[str, list[int]] = {}
        self.finished: dict[str, int] = {}  # sender -> how many it says it sent us
        self.sending = True
        # Done once something came from every peer: traffic flows on each pair.
        self.flowing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Record requests waiting for every named sender's last word.
        self._reports: list[tuple[set[str], Callable[[dict[str, Any]], None]]] = []

    def start(self, peers: dict[str, SendPort[Any]]) -> asyncio.Future[None]:
        self.peers = peers
        self.sent = dict.fromkeys(peers, 0)
        self._check()
        return asyncio.ensure_future(self._beat())

    async def _beat(self) -> None:
        while self.sending:
            for peer, port in self.peers.items():
                for _ in range(BURST):
                    port.send(("n", self.name, self.sent[peer]))
                    self.sent[peer] += 1
            await asyncio.sleep(PACE_SECONDS)
        for peer, port in self.peers.items():
            port.send(("fin", self.name, self.sent[peer]))

    def take(self, message: Any) -> None:
        kind, sender, number = message
        if kind == "n":
            self.got.setdefault(sender, []).append(number)
        else:
            self.finished[sender] = number
        self._check()

    def report_when_finished(
        self, senders: set[str], reply: Callable[[dict[str, Any]], None]
    ) -> None:
        """Hand the record to ``reply`` once each of ``senders`` has said its last word."""
        self._reports.append((senders, reply))
        self._check()

    def _check(self) -> None:
        if self.peers and not self.flowing.done() and set(self.peers) <= set(self.got):
            self.flowing.set_result(None)
        waiting = []
        for senders, reply in self._reports:
            if senders <= set(self.finished):
                reply(self.record())
            else:
                waiting.append((senders, reply))
        self._reports = waiting

    def record(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "got": {sender: summary(numbers) for sender, numbers in self.got.items()},
            "finished": self.finished,
        }


def summary(numbers: list[int]) -> dict[str, Any]:
    """How a received sequence compares with 0, 1, 2, ...: exact, or how it is not."""
    return {
        "count": len(numbers),
        "exact": numbers == list(range(len(numbers))),
        "unique": len(set(numbers)),
        "ordered": numbers == sorted(numbers),
    }


async def talker(setup: tuple[str, SendPort[Any]]) -> None:
    """An isolate's talker: hands its port to the driver, then talks until told to stop."""
    name, driver = setup
    me = Talker(name)
    driver.send(("port", name, me.inbox.send_port, ray.get_runtime_context().get_node_id()))
    me.flowing.add_done_callback(lambda _: driver.send(("flowing", name)))
    beating: asyncio.Future[None] | None = None
    async for message in me.inbox:
        if message[0] == "peers":
            beating = me.start(message[1])
        elif message[0] == "stop":
            me.sending = False
            assert beating is not None
            await beating
        elif message[0] == "report":
            _, reply, senders = message
            me.report_when_finished(senders, functools.partial(_answer, reply, name))
        else:
            me.take(message)


def _answer(reply: SendPort[Any], name: str, record: dict[str, Any]) -> None:
    reply.send((name, record))


def wait_on_node(announce: SendPort[Any], node: str) -> str:
    """A run that holds on ``node`` (until the node goes) and returns at once elsewhere."""
    here: str = ray.get_runtime_context().get_node_id()
    announce.send(("run started", here))
    if here == node:
        time.sleep(3600)
    return here


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def hear() -> dict[str, Any]:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return dict(json.loads(line))


class Scene:
    """The talkers, the runs on ``b``, and what became of them."""

    def __init__(self) -> None:
        self.nodes = {
            name: node["NodeID"]
            for node in ray.nodes()
            if node["Alive"]
            for name in NAMES
            if f"node_{name}" in node["Resources"]
        }
        self.control: ReceivePort[Any] = ReceivePort("driver")
        self.exits: ReceivePort[Any] = ReceivePort("exits")
        self.isolates: dict[str, Isolate] = {}
        self.ports: dict[str, SendPort[Any]] = {}
        self.main = Talker("main")
        self.runs: dict[str, IsolateFuture[str]] = {}
        self.outcome: dict[str, Any] = {"event": "outcome"}

    async def start(self) -> asyncio.Future[None]:
        for name in NAMES:
            self.isolates[name] = await Isolate.spawn(
                talker,
                (name, self.control.send_port),
                debug_name=f"talker-{name}",
                resources={f"node_{name}": 1},
            )
            self.isolates[name].add_on_exit_listener(self.exits.send_port, name)
        while len(self.ports) < len(NAMES):
            _, name, port, node = await anext(self.control)
            assert node == self.nodes[name], (name, node, self.nodes)
            self.ports[name] = port
        everyone = {**self.ports, "main": self.main.inbox.send_port}
        for name in NAMES:
            self.ports[name].send(("peers", everyone))
        self.main.inbox.listen(self.main.take)
        beating = self.main.start(everyone)
        # num_cpus=0: the nodes have one CPU each, and these runs only wait.
        b = self.nodes["b"]
        self.runs["pinned"] = Isolate.run(
            wait_on_node, self.control.send_port, b, num_cpus=0, resources={"node_b": 1}
        )
        self.runs["preferring"] = Isolate.run(
            wait_on_node,
            self.control.send_port,
            b,
            num_cpus=0,
            max_retries=3,
            scheduling_strategy=NodeAffinitySchedulingStrategy(b, soft=True),
        )
        # Both runs hold on b, and something went both ways on every pair.
        started, flowing = 0, set[str]()
        while started < len(self.runs) or flowing != set(NAMES):
            message = await anext(self.control)
            if message[0] == "flowing":
                flowing.add(message[1])
            else:
                assert message == ("run started", b), message
                started += 1
        await self.main.flowing
        return beating

    async def after_the_cut(self, since_cut: Any, limit: float) -> None:
        """Wait for ``b``'s exit notice and for the runs' outcomes, saying each as it comes."""

        async def exit_notice() -> None:
            self.note("exit", await anext(self.exits), since_cut())

        async def run_outcome(label: str) -> None:
            try:
                ran_on = await self.runs[label]
                where = next(name for name, node in self.nodes.items() if node == ran_on)
                self.note(label, f"ran on {where}", since_cut())
            except RemoteError as error:
                self.note(label, f"RemoteError: {str(error).splitlines()[0][:300]}", since_cut())

        waits = asyncio.gather(exit_notice(), *(run_outcome(label) for label in self.runs))
        try:
            await asyncio.wait_for(waits, limit)
        except TimeoutError:
            self.outcome["timed_out_after_seconds"] = limit

    def note(self, what: str, value: Any, seconds: float) -> None:
        self.outcome[what] = value
        self.outcome[f"{what}_after_cut_seconds"] = seconds
        say(event=what, value=value, after_cut_seconds=seconds)

    async def records(self, alive: list[str]) -> dict[str, Any]:
        """Every receiver's record, once it has every living sender's last word."""
        senders = {*alive, "main"}
        reports: ReceivePort[Any] = ReceivePort("reports")
        for name in alive:
            self.ports[name].send(("report", reports.send_port, senders))
        mine: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.main.report_when_finished(senders, mine.set_result)
        records = {"main": await asyncio.wait_for(mine, 120)}
        for _ in alive:
            name, record = await asyncio.wait_for(anext(reports), 120)
            records[name] = record
        reports.close()
        return records


async def main() -> None:
    init()
    scene = Scene()
    beating = await scene.start()
    say(event="ready", nodes=scene.nodes)

    done = await hear()  # the test cut b's link (and healed it, or not)
    cut_at = float(done["cut_at"])

    def since_cut() -> float:
        return round(time.time() - cut_at, 2)

    if done["healed"]:  # b's last words, after the stop below, show it is back
        scene.outcome["runs_still_running"] = not any(run.done() for run in scene.runs.values())
        alive = list(NAMES)
    else:
        await scene.after_the_cut(since_cut, float(done.get("limit_seconds", 600)))
        alive = ["head", "a"]
    for name in alive:
        scene.ports[name].send(("stop",))
    scene.main.sending = False
    await beating
    scene.outcome["records"] = await scene.records(alive)
    scene.outcome["alive"] = alive
    say(**scene.outcome)
    for name in alive:
        scene.isolates[name].kill(priority=Isolate.IMMEDIATE)
    for run in scene.runs.values():
        run.cancel()


if __name__ == "__main__":
    asyncio.run(main())
