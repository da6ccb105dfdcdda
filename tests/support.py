"""Helpers shared by the tests (no fixtures: those live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rayisolates import IsolatePool

ROOT = Path(__file__).resolve().parent.parent


def in_object_store(array: Any) -> bool:
    """Whether ``array``'s data lives in this process's mapping of Ray's object store."""
    address = array.__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            low, high = (int(bound, 16) for bound in fields[0].split("-"))
            if low <= address < high:
                return any("plasma" in field for field in fields[5:])
    return False


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 90) -> str:
    """Run ``code`` in a fresh interpreter from the repository root; return stdout."""
    environment = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    environment.update(env or {})
    finished = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout


def run(coroutine: Any, timeout: float = 90) -> Any:
    """Run a test coroutine on a fresh event loop, failing fast if it hangs."""
    import asyncio

    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def resident_megabytes(pid: int | None = None) -> float:
    """A process's resident memory in MB (this one by default; Linux /proc)."""
    with open(f"/proc/{pid or os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def settle(pool: IsolatePool, **wanted: int) -> dict[str, int]:
    """Wait until the pool's stats show ``wanted``: members come and go as messages
    reach the pool, and each change wakes the pool's condition."""

    engine = pool._engine  # its lock guards the stats; every event notifies the condition

    def reached() -> bool:
        stats = engine.state.stats()
        return all(stats[key] == value for key, value in wanted.items())

    with engine.settled:
        assert engine.settled.wait_for(reached, timeout=60), (wanted, engine.state.stats())
    return pool.stats()


def placed(nodes: tuple[str, ...], index: int) -> dict[str, Any]:
    """Ray options putting the ``index``-th of several isolates on ``nodes`` (their custom
    resources) in turn; none if ``nodes`` is empty."""
    return {"resources": {nodes[index % len(nodes)]: 1}} if nodes else {}


async def relay_through_breaks(
    count: int,
    relay_options: dict[str, Any],
    partner_options: dict[str, Any],
    before_each: Any,
) -> None:
    """Main -> A -> B and A -> main, ``count`` numbered messages, while
    ``before_each(i, a)`` breaks channels as it likes (it may send ``a`` the relay's
    ``"cut"`` or ``"sever"`` command, and is awaited); every message must arrive once, in
    order, on both paths."""
    from rayisolates import Isolate, ReceivePort, SendPort

    from . import entries

    port: ReceivePort[Any] = ReceivePort()
    relay = await Isolate.spawn(entries.cutting_relay, port.send_port, **relay_options)
    a: SendPort[Any] = await anext(port)
    partner = await Isolate.spawn(entries.echo, port.send_port, **partner_options)
    b: SendPort[Any] = await anext(port)
    a.send(b)
    for i in range(count):
        await before_each(i, a)
        a.send(i)
    got = [await anext(port) for _ in range(2 * count)]
    assert [m for m in got if isinstance(m, tuple)] == [("a", i) for i in range(count)]
    assert [m for m in got if not isinstance(m, tuple)] == list(range(count))
    relay.kill()
    partner.kill()
    port.close()
