"""The spawner's side of ``Isolate.spawn`` and ``Isolate.spawn_uri``.

Everything the new isolate needs is checked and encoded here, in the
spawner, so that an entry point or message that cannot be sent fails at the
call with ``IsolateSpawnException``; the supervisor then creates the isolate.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import cloudpickle

from ._codec import encode
from ._context import current
from ._errors import IsolateSpawnException
from ._future import IsolateFuture
from ._host import ACTOR_OPTIONS
from ._ports import SendPort
from ._supervisor import SpawnRequest

if TYPE_CHECKING:
    from ._isolate import Isolate

__all__ = ["spawn", "spawn_uri"]


def _check_options(options: dict[str, Any], action: str) -> None:
    unknown = sorted(set(options) - ACTOR_OPTIONS)
    if unknown:
        raise TypeError(
            f"{action} got unknown option(s) {', '.join(unknown)}: keyword arguments are "
            f"Ray actor options ({', '.join(sorted(ACTOR_OPTIONS))})"
        )


def _check_port(port: Any, name: str, action: str) -> None:
    if port is not None and not isinstance(port, SendPort):
        raise TypeError(f"{action}: {name} must be a SendPort or None, got {port!r}")


def _encoded_message(message: Any, action: str) -> tuple[int, Any, Any]:
    try:
        return encode(message, action)
    except TypeError as error:
        raise IsolateSpawnException(str(error)) from error


def _submit(request: SpawnRequest) -> IsolateFuture[Isolate]:
    context = current()
    reference = context.supervisor_handle().spawn.remote(request)
    reference.future().add_done_callback(
        lambda done: None if done.exception() else context.spawned(done.result())
    )
    name = request.debug_name or request.uri or "isolate"
    return IsolateFuture(reference, what=f"spawning {name}", force_cancel=False)


def spawn(
    entry_point: Callable[[Any], Any],
    message: Any,
    *,
    paused: bool = False,
    errors_are_fatal: bool = True,
    on_exit: SendPort[Any] | None = None,
    on_error: SendPort[Any] | None = None,
    debug_name: str | None = None,
    **options: Any,
) -> IsolateFuture[Isolate]:
    """Check and encode a spawn, then ask the supervisor to start it."""
    action = "Isolate.spawn()"
    _check_options(options, action)
    _check_port(on_exit, "on_exit", action)
    _check_port(on_error, "on_error", action)
    if not callable(entry_point):
        raise IsolateSpawnException(f"{action}: the entry point {entry_point!r} is not callable")
    try:
        entry = cloudpickle.dumps(entry_point)
    except Exception as error:
        raise IsolateSpawnException(
            f"{action}: the entry point {entry_point!r} cannot be sent to a new isolate: {error}"
        ) from error
    request = SpawnRequest(
        entry=entry,
        uri=None,
        args=None,
        message=_encoded_message(message, action),
        paused=paused,
        errors_are_fatal=errors_are_fatal,
        on_exit=on_exit,
        on_error=on_error,
        debug_name=debug_name,
        options=options,
    )
    return _submit(request)


def spawn_uri(
    uri: str | os.PathLike[str],
    args: list[str] | None,
    message: Any,
    *,
    paused: bool = False,
    errors_are_fatal: bool = True,
    on_exit: SendPort[Any] | None = None,
    on_error: SendPort[Any] | None = None,
    debug_name: str | None = None,
    **options: Any,
) -> IsolateFuture[Isolate]:
    """Check and encode a spawn by name, then ask the supervisor to start it."""
    action = "Isolate.spawn_uri()"
    _check_options(options, action)
    _check_port(on_exit, "on_exit", action)
    _check_port(on_error, "on_error", action)
    text = os.fspath(uri)
    if text.endswith(".py"):
        path = Path(text)
        if not path.is_file():
            raise IsolateSpawnException(f"{action}: no Python file at {text}")
        text = str(path.resolve())
    elif not text or text.startswith(":"):
        raise IsolateSpawnException(
            f"{action}: {text!r} is neither 'package.module:function' nor a path to a .py file"
        )
    if args is not None and not all(isinstance(arg, str) for arg in args):
        raise TypeError(f"{action}: args must be a list of str, got {args!r}")
    request = SpawnRequest(
        entry=None,
        uri=text,
        args=list(args) if args is not None else None,
        message=_encoded_message(message, action),
        paused=paused,
        errors_are_fatal=errors_are_fatal,
        on_exit=on_exit,
        on_error=on_error,
        debug_name=debug_name,
        options=options,
    )
    return _submit(request)
