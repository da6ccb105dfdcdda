"""One small real Ray runtime for the whole test session.

Tests live in the package ``tests`` and pytest runs from the repository root,
which Ray puts on every local worker's ``sys.path``: functions defined in test
modules are imported by reference in the workers, as user code would be.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import ray

import rayisolates

OBJECT_STORE_BYTES = 600 * 1024 * 1024


@pytest.fixture(scope="session", autouse=True)
def ray_runtime() -> Iterator[dict[str, object]]:
    """The session's Ray: 2 CPUs, a small object store, started once."""
    os.environ.pop("RAY_ADDRESS", None)
    rayisolates.init(num_cpus=2, object_store_memory=OBJECT_STORE_BYTES, resources={"test_slot": 4})
    context = ray.get_runtime_context()
    yield {"gcs_address": context.gcs_address, "node_id": context.get_node_id()}
    rayisolates.shutdown()
