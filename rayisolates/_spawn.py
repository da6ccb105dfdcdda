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

from ._context.context import current
from ._errors import IsolateSpawnException
from ._future import IsolateFuture
from ._options import ACTOR_OPTIONS, check_options
from ._sendport import SendPort
from ._transport.codec import encode
from ._transport.rpc import call, fire
from ._transport.wire import Encoded, KillNow, SpawnRequest, new_id

if TYPE_CHECKING:
    from ._isolate import Isolate

__all__ = ["spawn", "spawn_uri"]


def _check_port(port: Any, name: str, action: str) -> None:
    if port is not None and not isinstance(port, SendPort):
        raise TypeError(f"{action}: {name} must be a SendPort or None, got {port!r}")


def _encoded_message(message: Any, action: str) -> Encoded:
    try:
        return encode(message, action)
    except TypeError as error:
        raise IsolateSpawnException(str(error)) from error


def _submit(request: SpawnRequest) -> IsolateFuture[Isolate]:
    context = current()
    spawning = context.runtime.spawn_leased(request)
    if spawning is None:
        supervisor = context.sender.supervisor()
        # repeated: one isolate per spawn_id
        spawning = call(lambda: fire(supervisor.spawn, request))
    context.spawn_in_flight(spawning)
    spawning.add_done_callback(
        lambda done: None if done.exception() else context.runtime.spawned(done.result())
    )

    def end_late_isolate(isolate: Isolate) -> None:
        assert isolate.terminate_capability is not None
        context.supervise(KillNow(isolate.control_port.isolate_id, isolate.terminate_capability))

    name = request.debug_name or request.uri or "isolate"
    return IsolateFuture.following(spawning, f"spawning {name}", end_late_isolate)


def _spawn(
    action: str,
    entry: bytes | None,
    uri: str | None,
    args: list[str] | None,
    message: Any,
    paused: bool,
    errors_are_fatal: bool,
    on_exit: SendPort[Any] | None,
    on_error: SendPort[Any] | None,
    debug_name: str | None,
    options: dict[str, Any],
    module: str | None = None,
) -> IsolateFuture[Isolate]:
    check_options(options, ACTOR_OPTIONS, action, "Ray actor options")
    _check_port(on_exit, "on_exit", action)
    _check_port(on_error, "on_error", action)
    request = SpawnRequest(
        spawn_id=new_id("spawn"),
        entry=entry,
        uri=uri,
        args=args,
        message=_encoded_message(message, action),
        paused=paused,
        errors_are_fatal=errors_are_fatal,
        on_exit=on_exit,
        on_error=on_error,
        debug_name=debug_name,
        options=options,
        module=module,
    )
    return _submit(request)


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
    """Start a long-lived isolate running ``entry_point(message)``.

    The isolate is a Ray actor with its own event loop; ``entry_point`` (a
    plain function or ``async def``) runs there. The isolate lives while
    its entry point runs or it has an open receive port, then exits by
    itself. The future completes once the isolate has started.

    Args:
        entry_point: Called with ``message`` in the new isolate; must be
            picklable (module-level functions travel by reference).
        message: Usually a ``SendPort`` to talk back on; copied as by send.
        paused: Start paused: the entry point runs after
            ``isolate.resume(isolate.pause_capability)``.
        errors_are_fatal: Whether an uncaught error ends the isolate.
        on_exit: Receives ``None`` when the isolate ends, however it ends.
        on_error: Receives ``[str(error), stack]`` for each uncaught error.
        debug_name: Names the isolate in Ray's state API, dashboard and logs.
        **options: Ray actor options (``num_cpus`` (default 0),
            ``num_gpus``, ``memory``, ``resources``,
            ``scheduling_strategy``, ``runtime_env``, ...).

    Returns:
        An :class:`IsolateFuture` of the new :class:`Isolate`.

    Raises:
        IsolateSpawnException: The entry point is not callable or cannot
            be sent, or the message cannot be sent (raised here); or the
            isolate could not start (raised by the future). The cause is
            chained.
        TypeError: An option is unknown.

    Differences from Dart: returns an :class:`IsolateFuture` (``await`` it,
    or ``.result()``); ``options`` place the isolate on a Ray cluster. An
    isolate reserves no CPU unless ``num_cpus`` is given.
    """
    action = "Isolate.spawn()"
    if not callable(entry_point):
        raise IsolateSpawnException(f"{action}: the entry point {entry_point!r} is not callable")
    try:
        entry = cloudpickle.dumps(entry_point)
    except Exception as error:
        raise IsolateSpawnException(
            f"{action}: the entry point {entry_point!r} cannot be sent to a new isolate: {error}"
        ) from error
    return _spawn(
        action,
        entry,
        None,
        None,
        message,
        paused,
        errors_are_fatal,
        on_exit,
        on_error,
        debug_name,
        options,
        _module_of(entry_point),
    )


def _module_of(entry_point: Any) -> str | None:
    """The module an entry point is imported from in the new isolate (``None`` for one
    that travels by value: a script's own, a lambda, a closure)."""
    module = getattr(entry_point, "__module__", None)
    qualname = getattr(entry_point, "__qualname__", "<")
    if not isinstance(module, str) or module == "__main__" or "<" in qualname:
        return None
    return module


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
    """Start an isolate running a function found by name, as Dart's ``spawnUri``.

    Args:
        uri: ``"package.module:function"`` (``:main`` if no function is
            named), or a path to a ``.py`` file whose ``main`` runs (read
            where the isolate runs: on a cluster, a path every node has).
        args: Passed to ``main`` if it takes one or two parameters.
        message: Passed to ``main`` if it takes two parameters.

    The other arguments are those of :meth:`spawn`. ``main`` is called
    with ``()``, ``(args)`` or ``(args, message)`` as its parameters allow.

    Raises:
        IsolateSpawnException: The module, file or function is missing or
            not callable, or the message cannot be sent.
    """
    action = "Isolate.spawn_uri()"
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
    return _spawn(
        action,
        None,
        text,
        list(args) if args is not None else None,
        message,
        paused,
        errors_are_fatal,
        on_exit,
        on_error,
        debug_name,
        options,
        None if text.endswith(".py") else text.partition(":")[0],
    )
