"""Dart's isolate model for Python, running on Ray from a laptop to a cluster."""

from ._errors import IsolateError, IsolateSpawnException, RemoteError
from ._future import IsolateFuture
from ._isolate import Isolate
from ._run import compute
from ._runtime import init, shutdown

__all__ = [
    "Isolate",
    "IsolateError",
    "IsolateFuture",
    "IsolateSpawnException",
    "RemoteError",
    "compute",
    "init",
    "shutdown",
]
