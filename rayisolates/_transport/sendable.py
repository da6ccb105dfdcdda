"""Naming the part of a value that cannot cross to another isolate."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ray import cloudpickle

__all__ = ["refusal", "unsendable_call", "unsendable_part"]

_MAX_DEPTH = 6


def _problem(value: Any) -> str | None:
    try:
        cloudpickle.dumps(value)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def _children(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"[{key!r}]", item
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield f"[{index}]", item
    else:
        try:
            value.__reduce_ex__(5)
        except Exception:
            return  # the object itself refuses to be pickled: it is the culprit
        for name, item in getattr(value, "__dict__", {}).items():
            yield f".{name}", item


def unsendable_part(
    value: Any, label: str, problem_of: Callable[[Any], str | None] = _problem
) -> str | None:
    """Describe the innermost part of ``value`` that cannot be pickled.

    Only for error paths: it pickles ``value`` again, piece by piece.

    Args:
        value: The value that failed to pickle.
        label: How to name ``value`` itself in the description.
        problem_of: Says why a value cannot be pickled, or ``None`` if it can.

    Returns:
        ``"label[0].lock (<unlocked _thread.lock ...>): TypeError: ..."``, or
        ``None`` when ``value`` pickles after all.
    """
    problem = problem_of(value)
    if problem is None:
        return None
    path, culprit = label, value
    for _ in range(_MAX_DEPTH):
        for step, child in _children(culprit):
            child_problem = problem_of(child)
            if child_problem is not None:
                path, culprit, problem = path + step, child, child_problem
                break
        else:
            break
    shown = repr(culprit)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{path} ({shown}): {problem}"


def unsendable_call(fn: Any, args: tuple[Any, ...]) -> str | None:
    """The first part of a call, the function then each argument, that cannot be sent,
    named (``"argument 1 (a lock)"``); ``None`` if every part can."""
    labelled = [("the function", fn), *((f"argument {i}", arg) for i, arg in enumerate(args))]
    for label, value in labelled:
        part = unsendable_part(value, label)
        if part is not None:
            return part
    return None


def refusal(action: str, part: str, consequence: str = "nothing was sent") -> TypeError:
    """The one wording of every "cannot send" error: what refused, what, and what became
    of the call (``"IsolatePool.run() cannot send argument 1 (...): ...; nothing was
    submitted"``)."""
    return TypeError(f"{action} cannot send {part}; {consequence}")
