"""Uncaught errors: to the error listeners, else reported through ``logging``."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rayisolates._context.uncaught import UncaughtErrors
from rayisolates._sendport import SendPort


def test_without_listeners_an_uncaught_error_is_logged_with_its_stack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[Any] = []
    errors = UncaughtErrors(lambda: "worker", lambda port, encoded: sent.append(encoded))
    with caplog.at_level(logging.ERROR, logger="rayisolates"):
        try:
            raise ValueError("boom")
        except ValueError as error:
            errors.uncaught(error)
    (record,) = caplog.records
    assert record.name == "rayisolates.uncaught" and record.levelno == logging.ERROR
    assert "Uncaught error in isolate worker" in record.getMessage()
    assert "ValueError: boom" in record.getMessage() and sent == []


def test_with_listeners_an_uncaught_error_is_sent_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[Any] = []
    errors = UncaughtErrors(lambda: "worker", lambda port, encoded: sent.append(encoded))
    errors.listeners.add(SendPort("isolate-1", 5, None))
    errors.uncaught(ValueError("boom"))
    assert len(sent) == 1 and not caplog.records
