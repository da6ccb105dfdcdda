"""The public surface: what ``rayisolates`` exports and how it presents itself."""

from __future__ import annotations

import pickle

import rayisolates


def test_all_is_sorted_and_importable() -> None:
    assert rayisolates.__all__ == sorted(rayisolates.__all__)
    for name in rayisolates.__all__:
        assert hasattr(rayisolates, name), name


def test_public_classes_show_the_public_module() -> None:
    for name in rayisolates.__all__:
        value = getattr(rayisolates, name)
        if isinstance(value, type):
            assert value.__module__ == "rayisolates", name


def test_error_hierarchy() -> None:
    assert issubclass(rayisolates.RemoteError, rayisolates.IsolateError)
    assert issubclass(rayisolates.IsolateSpawnException, rayisolates.IsolateError)
    error = rayisolates.RemoteError("it broke", "  File x, line 1")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.description, copy.stack_trace, str(copy)) == (
        "it broke",
        "  File x, line 1",
        "it broke",
    )
