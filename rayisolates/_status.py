"""``rayisolates status``: the isolates live in a Ray cluster, per driver, from any terminal.

Every driver that uses rayisolates has a supervisor actor, named after its
job in the ``rayisolates`` namespace. This connects to the cluster, finds
the live supervisors among that namespace's named actors (Ray's public
``list_named_actors``) and asks each for its status: the main isolate's
figures and pools (the driver answers through its relay), and
each live isolate's, with the worker it serves and its calls pending (the
isolate answers on its control thread, so a busy one answers too).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from typing import Any

import ray
from ray.util import list_named_actors

from ._runtime.supervisor import STATUS_SECONDS
from ._transport.wire import SUPERVISOR_NAMESPACE, supervisor_name

__all__ = ["collect", "render", "status"]

_PREFIX = supervisor_name("")
CONNECT_SECONDS = 5.0


def collect(address: str | None = None) -> list[dict[str, Any]]:
    """The status of every driver using rayisolates on the cluster at ``address``
    (what ``ray.init`` takes; default ``RAY_ADDRESS``, else ``auto``).

    Raises:
        ConnectionError: No Ray cluster answers there.
    """
    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    _check_reachable(address)
    ray.init(
        address=address,
        namespace=SUPERVISOR_NAMESPACE,
        logging_level=logging.ERROR,
        log_to_driver=False,
    )
    try:
        # Named actors of this namespace (connected to it above): a dead one is
        # no longer listed, and one that ends meanwhile is left out by _ask.
        names = sorted(name for name in list_named_actors() if name.startswith(_PREFIX))
        addresses = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes()}
        drivers = [driver for driver in _ask(names) if driver is not None]
        for driver in drivers:
            for figures in [driver["main"], *driver["isolates"]]:
                figures["node_ip"] = addresses.get(figures.get("node_id", ""), "")
        return drivers
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail at once where nothing listens at a ``host:port`` address (``ray.init`` would
    retry for minutes)."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or "://" in address:
        return  # "auto", or a form ray.init checks itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise ConnectionError(f"nothing answers at {address}: {error}") from None


def _ask(names: list[str]) -> list[dict[str, Any] | None]:
    """The supervisors' answers, asked all at once; None for one that ended meanwhile."""
    asked = []
    for name in names:
        try:
            asked.append(ray.get_actor(name, namespace=SUPERVISOR_NAMESPACE).status.remote())
        except ValueError:
            continue
    ray.wait(asked, num_returns=len(asked), timeout=3 * STATUS_SECONDS)
    return [_answer(ref) for ref in asked]


def _answer(ref: ray.ObjectRef) -> dict[str, Any] | None:
    try:
        answer: dict[str, Any] = ray.get(ref, timeout=0)
    except (ray.exceptions.RayError, TimeoutError):
        return None
    return answer


_COLUMNS = (
    ("ISOLATE", "debug_name"),
    ("ID", "isolate_id"),
    ("NODE", "node_ip"),
    ("PID", "pid"),
    ("STATE", "state"),
    ("PORTS", "open_ports"),
    ("SENT", "sent"),
    ("RECEIVED", "received"),
    ("QUEUED", "queued"),
)
_POOL_COLUMNS = (
    ("POOL", "name"),
    ("IN", "owner"),
    ("MEMBERS", "members"),
    ("BUSY", "busy"),
    ("QUEUED", "queued"),
    ("RUNNING", "running"),
    ("COMPLETED", "completed"),
    ("FAILED", "failed"),
    ("REPLACED", "replaced"),
    ("RETRIED", "retried"),
)
_WORKER_COLUMNS = (
    ("WORKER", "name"),
    ("ID", "isolate_id"),
    ("CLASS", "class"),
    ("PENDING", "pending"),
    ("RUNNING", "running"),
    ("COMPLETED", "completed"),
    ("FAILED", "failed"),
)


def _table(columns: tuple[tuple[str, str], ...], rows: list[dict[str, Any]]) -> list[str]:
    cells = [[title for title, _ in columns]]
    cells += [
        ["-" if row.get(key) is None else str(row[key]) for _, key in columns] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]


def render(drivers: list[dict[str, Any]]) -> str:
    """The status as tables, one section per driver."""
    if not drivers:
        return "No program using rayisolates runs on this cluster."
    lines: list[str] = []
    for driver in drivers:
        main = driver["main"]
        lines.append(
            f"driver (job {driver['job_id']}), main isolate: pid {main.get('pid', '-')} on "
            f"{main.get('node_ip') or '-'}, {main.get('open_ports', '-')} open ports, "
            f"sent {main.get('sent', '-')}, received {main.get('received', '-')}, "
            f"queued {main.get('queued', '-')}"
        )
        isolates = sorted(
            driver["isolates"], key=lambda i: (i["debug_name"] or "", i["isolate_id"])
        )
        lines += _table(_COLUMNS, isolates) if isolates else ["  (no isolates)"]
        if driver["pools"]:
            lines += _table(_POOL_COLUMNS, driver["pools"])
        if driver.get("workers"):
            lines += _table(_WORKER_COLUMNS, driver["workers"])
        if driver["idle_pooled_hosts"]:
            lines.append(f"  {driver['idle_pooled_hosts']} warm hosts wait in init's isolate_pool")
        lines.append("")
    return "\n".join(lines).rstrip()


def status(address: str | None = None, as_json: bool = False) -> int:
    """Print the status (a table, or JSON); returns the exit status."""
    try:
        drivers = collect(address)
    except ConnectionError as error:
        print(f"rayisolates status: no Ray cluster to ask ({error})", file=sys.stderr)
        return 1
    print(json.dumps({"drivers": drivers}, indent=2) if as_json else render(drivers))
    return 0
