"""Exactly once across transient failures: Ray's own fault injection on every actor call.

With ``RAY_testing_rpc_failure`` Ray drops a share of actor-call requests and
replies (``ActorUnavailableError``: "may or may not have been executed").
Raw Ray loses calls then (a burst of 200 shows it); rayisolates repeats them under the same sequence
numbers and the receiver drops what it has seen, so every message arrives
once, in order. Each run starts a fresh Ray of its own (the setting applies
to processes started after it is set), with direct channels off: every
message then takes Ray's calls, where the failures are injected.
"""

from __future__ import annotations

import pytest

from .support import run_python

INJECTION = (
    '{"CoreWorkerService.grpc_client.PushTask":'
    '{"num_failures":-1,"req_failure_prob":10,"resp_failure_prob":10}}'
)

# A lost request leaves a gap in an actor's sequence numbers; Ray waits 30 s
# for it before cancelling what queued behind it. 2 s keeps the test short and
# changes nothing else: rayisolates repeats such calls either way.
SHORT_REORDER_WAIT = {"RAY_actor_scheduling_queue_max_reorder_wait_seconds": "2"}

ECHO_BURST = """
import asyncio, time
import ray
import rayisolates
from rayisolates import Isolate, ReceivePort
from tests import entries

COUNT = {count}


@ray.remote(num_cpus=0, max_task_retries=0)
class Raw:
    def echo(self, value):
        return value


def raw_burst():
    raw = Raw.remote()
    while True:  # the first call may be lost too
        try:
            ray.get(raw.echo.remote(0))
            break
        except ray.exceptions.ActorUnavailableError:
            pass
    lost = 0
    for ref in [raw.echo.remote(i) for i in range(200)]:
        try:
            ray.get(ref)
        except ray.exceptions.ActorUnavailableError:
            lost += 1
    return lost


async def burst():
    port = ReceivePort()
    await Isolate.spawn(entries.echo, port.send_port)
    worker = await anext(port)
    started = time.perf_counter()
    for i in range(COUNT):
        worker.send(i)
    got = [await anext(port) for _ in range(COUNT)]
    seconds = time.perf_counter() - started
    assert got == list(range(COUNT)), "lost, repeated or out of order"
    worker.send(None)
    assert await anext(port) == "bye"
    # The other way: an isolate's burst to the main isolate, then its exit notice.
    await Isolate.spawn(entries.burst, (port.send_port, "b", COUNT), on_exit=port.send_port)
    got = [await anext(port) for _ in range(COUNT + 1)]
    assert got == [("b", i) for i in range(COUNT)] + [None], "lost, repeated or out of order"
    return seconds


rayisolates.init(num_cpus=2)
print("raw lost", raw_burst())
print("seconds", asyncio.run(asyncio.wait_for(burst(), 150)))
rayisolates.shutdown()
"""


def echo_burst(count: int, injected: bool) -> tuple[int, float]:
    env = {"RAY_testing_rpc_failure": INJECTION, **SHORT_REORDER_WAIT} if injected else {}
    env["RAYISOLATES_DIRECT"] = "0"  # every message over Ray, where the failures are
    output = run_python(ECHO_BURST.format(count=count), env=env, timeout=240)
    lines = dict(line.rsplit(" ", 1) for line in output.splitlines() if line[:3] in ("raw", "sec"))
    return int(lines["raw lost"]), float(lines["seconds"])


@pytest.mark.timeout(300)
def test_echo_burst_arrives_once_in_order_under_injected_failures() -> None:
    raw_lost, seconds = echo_burst(20_000, injected=True)
    assert raw_lost > 0  # the injection is on: raw Ray lost calls
    print(f"20,000 echoes under injection: {seconds:.2f} s; raw Ray lost {raw_lost} calls")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_echo_burst_without_injection_for_comparison() -> None:
    raw_lost, seconds = echo_burst(20_000, injected=False)
    assert raw_lost == 0
    print(f"20,000 echoes without injection: {seconds:.2f} s")
