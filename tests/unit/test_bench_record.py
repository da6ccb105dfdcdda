"""The record written beside a bench run's figures: what produced them."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from pathlib import Path

import ray

from rayisolates.bench.record import run_record, sidecar_path


def test_the_record_sits_beside_the_figures() -> None:
    assert sidecar_path("docs/bench.json") == Path("docs/bench.meta.json")
    assert sidecar_path(Path("/tmp/bench_pool.json")) == Path("/tmp/bench_pool.meta.json")
    assert sidecar_path("figures") == Path("figures.meta.json")  # no .json: appended


def test_the_record_names_machine_versions_and_date() -> None:
    when = datetime.datetime(2026, 12, 3, 18, 0, 5, tzinfo=datetime.UTC)
    cluster = {"nodes": 1, "cpus": 2.0, "memory_bytes": 1}
    record = run_record(
        mode="single-node", quick=False, cases=["a", "b"], cluster=cluster, when=when
    )
    assert record["date"] == "2026-12-03T18:00:05+00:00"
    assert record["machine"]["cores"] == os.cpu_count()
    assert record["machine"]["memory_bytes"] > 2**20
    assert record["machine"]["architecture"] == platform.machine()
    assert record["python"] == platform.python_version()
    assert record["ray"] == ray.__version__
    assert record["rayisolates"] == importlib.metadata.version("rayisolates")
    assert (record["mode"], record["quick"], record["cases"]) == ("single-node", False, ["a", "b"])
    assert record["ray_cluster"] == cluster


def test_without_a_moment_the_record_is_dated_now() -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    record = run_record(mode="across-nodes", quick=True, cases=[], cluster=None)
    after = datetime.datetime.now(datetime.UTC)
    assert before <= datetime.datetime.fromisoformat(record["date"]) <= after
