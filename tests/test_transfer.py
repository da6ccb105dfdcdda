"""TransferableTypedData, and ports used from Isolate.run computations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rayisolates import Isolate, ReceivePort, SendPort, TransferableTypedData

from . import entries
from .support import in_object_store, run


def report_progress(job: tuple[SendPort[Any], int]) -> str:
    reply, steps = job
    for step in range(steps):
        reply.send(step)
    return "done"


def open_a_port() -> None:
    ReceivePort()


def test_from_list_copies_and_materializes_once() -> None:
    source = bytearray(b"abc")
    data = TransferableTypedData.from_list([source, b"def", np.array([1], dtype=np.uint8)])
    source[0] = ord("z")
    assert len(data) == 7
    assert bytes(data.materialize()) == b"abcdef\x01"
    with pytest.raises(RuntimeError, match="only be called once"):
        data.materialize()


def test_from_list_rejects_what_is_not_a_buffer() -> None:
    with pytest.raises(TypeError, match="element 1"):
        TransferableTypedData.from_list([b"ok", 3])
    with pytest.raises(ValueError, match="not contiguous"):
        TransferableTypedData.from_list([np.arange(10)[::2]])


def test_transfer_to_an_isolate_and_back_without_copies() -> None:
    numbers = np.arange(1_000_000, dtype=np.int64)

    async def main() -> Any:
        with ReceivePort[Any]() as port:
            data = TransferableTypedData.from_list([numbers])
            await Isolate.spawn(entries.transfer_back, (port.send_port, data))
            return await anext(port)

    total, was_read_only, answer = run(main())
    assert total == int(numbers.sum())
    assert was_read_only is True  # the isolate read it straight from the object store
    doubled = np.frombuffer(answer.materialize(), dtype=np.int64)
    assert doubled[-1] == 2 * 999_999
    assert in_object_store(doubled)


def test_isolate_run_can_send_through_ports_before_returning() -> None:
    async def main() -> list[Any]:
        with ReceivePort[Any]() as port:
            result = await Isolate.run(report_progress, (port.send_port, 5))
            return [result] + [await anext(port) for _ in range(5)]

    assert run(main()) == ["done", 0, 1, 2, 3, 4]


def test_isolate_run_cannot_receive() -> None:
    with pytest.raises(RuntimeError, match="can send but not receive"):
        Isolate.run(open_a_port).result(timeout=60)
