"""``rayisolates demo``: the examples, run in order on one Ray runtime.

Each example in ``examples/`` runs as the plain script it is, in its own
process, joining the Ray runtime this command started (or ``--address``)
through ``RAY_ADDRESS``.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import ray

from ._api import init, shutdown

__all__ = ["EXAMPLES", "EXAMPLES_NEED", "NO_CHECKOUT", "demo", "examples_folder", "missing"]

EXAMPLES = [
    "simple_worker_isolate.py",
    "simple_isolate_closure.py",
    "send_and_receive.py",
    "long_running_isolate.py",
    "ports_example.py",
    "worker_photos.py",
    "large_json.py",
    "process_photos.py",
    "pool_word_count.py",
    "stream_lines.py",
    "cluster_ring.py",
]


NO_CHECKOUT = (
    "rayisolates demo runs the example scripts of a source checkout (its examples/ "
    "folder), and this installation has none: the package does not ship them. Clone "
    "the repository and run `make demo` there, or run `rayisolates demo` from inside "
    "the checkout."
)

# What the examples import beyond the package: the `examples` extra.
EXAMPLES_NEED = ("httpx", "orjson")


def missing() -> list[str]:
    """The modules of :data:`EXAMPLES_NEED` that this Python cannot import."""
    return [name for name in EXAMPLES_NEED if importlib.util.find_spec(name) is None]


def examples_folder(candidates: Sequence[Path] | None = None) -> Path | None:
    """The ``examples/`` folder of the source checkout this package runs from, if any.

    Looked for beside the package (an editable install) and in the working
    directory.
    """
    if candidates is None:
        candidates = (Path(__file__).resolve().parents[1] / "examples", Path.cwd() / "examples")
    for candidate in candidates:
        if all((candidate / name).is_file() for name in EXAMPLES):
            return candidate
    return None


def _summary(script: Path) -> str:
    docstring = ast.get_docstring(ast.parse(script.read_text())) or script.stem
    return docstring.splitlines()[0].replace("``", "")


def _spinner(name: str, stop: threading.Event) -> None:
    started = time.perf_counter()
    for frame in itertools.cycle("|/-\\"):
        if stop.wait(0.1):
            break
        sys.stderr.write(f"\r  {frame} {name} {time.perf_counter() - started:4.1f} s")
        sys.stderr.flush()
    sys.stderr.write("\r" + " " * 60 + "\r")


def _run(script: Path, address: str) -> tuple[int, str, str, float]:
    stop = threading.Event()
    spinner = None
    if sys.stderr.isatty():
        spinner = threading.Thread(target=_spinner, args=(script.name, stop), daemon=True)
        spinner.start()
    started = time.perf_counter()
    try:
        finished = subprocess.run(
            [sys.executable, str(script)],
            cwd=script.parent.parent,
            env={**os.environ, "RAY_ADDRESS": address},
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        stop.set()
        if spinner is not None:
            spinner.join()
    return finished.returncode, finished.stdout, finished.stderr, time.perf_counter() - started


def demo(address: str | None = None) -> int:
    """Run every example; returns 0 when all succeeded, 1 at the first failure.

    Returns 2, saying why, when there is no source checkout to take the
    examples from (an installed package does not ship them), or when what
    the examples import (the ``examples`` extra) is not installed.
    """
    folder = examples_folder()
    if folder is None:
        print(NO_CHECKOUT, file=sys.stderr)
        return 2
    if absent := missing():
        print(
            f"rayisolates demo: the examples import {', '.join(absent)}, which this Python "
            "lacks: pip install 'rayisolates[examples]' (make demo installs it).",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    where = address or os.environ.get("RAY_ADDRESS")
    print(f"Starting Ray {'at ' + where if where else 'locally'} ...", flush=True)
    init(address=address)
    try:
        gcs = ray.get_runtime_context().gcs_address
        print(f"Ray ready in {time.perf_counter() - started:.1f} s\n", flush=True)
        for number, name in enumerate(EXAMPLES, 1):
            script = folder / name
            print(f"[{number}/{len(EXAMPLES)}] {name}: {_summary(script)}", flush=True)
            status, out, err, seconds = _run(script, gcs)
            for line in out.splitlines():
                print(f"    {line}")
            if status != 0:
                print(f"    FAILED (exit status {status}):", file=sys.stderr)
                for line in err.strip().splitlines()[-15:]:
                    print(f"    {line}", file=sys.stderr)
                return 1
            print(f"    ({seconds:.1f} s)\n", flush=True)
    finally:
        shutdown()
    print(f"All {len(EXAMPLES)} examples ran in {time.perf_counter() - started:.1f} s")
    return 0
