"""What produced a bench run's figures: the machine, Python, Ray, rayisolates and the date.

``rayisolates bench --json FILE`` writes the figures to ``FILE`` (a list of
rows, as before) and this record beside it, to the sidecar
:func:`sidecar_path` names (``bench.json`` -> ``bench.meta.json``): readers of
the rows need not change, and a figure is never quoted without what it was
measured on.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

import ray

from .._version import __version__

__all__ = ["machine", "ray_cluster", "run_record", "sidecar_path"]

FORMAT = 1  # bumped when a field changes meaning


def sidecar_path(json_path: str | os.PathLike[str]) -> Path:
    """Where the record of the figures at ``json_path`` goes: ``X.json`` -> ``X.meta.json``."""
    path = Path(json_path)
    stem = path.name.removesuffix(".json")
    return path.with_name(f"{stem}.meta.json")


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None  # a platform without these sysconf names


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def machine() -> dict[str, Any]:
    """This machine (the driver's): cores, memory, CPU model, operating system."""
    return {
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "cpu": _cpu_model(),
        "architecture": platform.machine(),
        "system": platform.platform(),
    }


def run_record(
    *,
    mode: str,
    quick: bool,
    cases: list[str],
    cluster: dict[str, Any] | None,
    when: datetime.datetime | None = None,
) -> dict[str, Any]:
    """The record of one run; ``cluster`` is :func:`ray_cluster`, taken while Ray was up."""
    moment = when or datetime.datetime.now(datetime.UTC)
    return {
        "format": FORMAT,
        "date": moment.isoformat(timespec="seconds"),
        "machine": machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "ray": ray.__version__,
        "rayisolates": __version__,
        "mode": mode,
        "quick": quick,
        "cases": cases,
        "ray_cluster": cluster,
    }


def ray_cluster() -> dict[str, Any]:
    """The Ray cluster measured on (call while connected): its live nodes, CPUs and memory."""
    resources = ray.cluster_resources()
    return {
        "nodes": sum(1 for node in ray.nodes() if node["Alive"]),
        "cpus": resources.get("CPU", 0.0),
        "memory_bytes": int(resources.get("memory", 0)),
    }
