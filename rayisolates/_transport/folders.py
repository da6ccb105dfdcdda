"""The node's private folder of direct-channel sockets, and what dead processes leave in it.

Each process that receives listens on a Unix socket named after its isolate
id in a folder per node that only the user running Ray can enter (mode 700);
a folder someone else owns or can enter would let them in, so then no Unix
socket is used at all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import tempfile
import time
from pathlib import Path

__all__ = ["direct_folder", "private", "sweep"]

log = logging.getLogger("rayisolates.direct")

_STALE_SECONDS = 10.0  # a socket older than this that nobody listens on was left by the dead


def direct_folder(node_id: str, base: str | None = None) -> Path | None:
    """This user's folder of sockets for ``node_id``, made private; ``None`` if it is not ours.

    A folder someone else owns or can enter would let them in: then no
    direct channel is used at all (everything goes over Ray). The folder is
    removed by the last endpoint on the node to close (:meth:`Endpoint.close`),
    and made again by the next.
    """
    root = Path(base or tempfile.gettempdir()) / f"rayisolates-{os.getuid()}"
    folder = root / node_id[:16]
    return folder if private(root) and private(folder) else None


def private(path: Path) -> bool:
    """Make ``path`` a folder only this user can enter, or find it is one; whether it is."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        log.warning(
            "rayisolates: %s is not a private folder of this user; "
            "messages between isolates on this node go over Ray",
            path,
        )
        return False
    return True


def sweep(folder: Path, min_age: float = _STALE_SECONDS) -> int:
    """Remove what ended processes left behind; how many sockets.

    In ``folder`` (this node's) and in every other node's folder beside it:
    sockets nobody listens on that were made more than ``min_age`` seconds
    ago (a socket made just now may not listen yet), then the other nodes'
    folders that are left empty (nodes that are gone, or have no isolate now).
    """
    removed = 0
    others = [path for path in folder.parent.iterdir() if path.is_dir() and path != folder]
    for node in [folder, *others]:
        for path in node.glob("*.sock"):
            with contextlib.suppress(OSError):
                if time.time() - path.lstat().st_mtime >= min_age and not _listening(path):
                    path.unlink()
                    removed += 1
        if node is not folder:
            with contextlib.suppress(OSError):
                node.rmdir()  # only if empty
    return removed


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        return False
    except OSError:
        return True  # not ours to judge
    finally:
        probe.close()
    return True
