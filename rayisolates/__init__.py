"""Dart's isolate model for Python, running on Ray from a laptop to a cluster."""

from ._api import init, shutdown
from ._capability import Capability
from ._errors import IsolateError, IsolateSpawnException, RemoteError
from ._future import IsolateFuture
from ._isolate import Isolate
from ._pool.map import PoolMap
from ._pool.pool import IsolatePool
from ._ports import RawReceivePort, ReceivePort, SendPort
from ._run import compute
from ._stream.consumer import IsolateStream
from ._transfer import TransferableTypedData
from ._version import __version__ as __version__
from ._worker.worker import IsolateWorker

__all__ = [
    "Capability",
    "Isolate",
    "IsolateError",
    "IsolateFuture",
    "IsolatePool",
    "IsolateSpawnException",
    "IsolateStream",
    "IsolateWorker",
    "PoolMap",
    "RawReceivePort",
    "ReceivePort",
    "RemoteError",
    "SendPort",
    "TransferableTypedData",
    "compute",
    "init",
    "shutdown",
]
