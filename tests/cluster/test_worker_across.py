"""An IsolateWorker handle sent to an isolate on another node, and used there."""

from __future__ import annotations

from typing import Any

import pytest

from rayisolates import Isolate, IsolateWorker, ReceivePort

from .. import worker_entries
from ..support import run

pytestmark = pytest.mark.timeout(180)


def test_a_handle_sent_to_another_node_is_called_there(ray_runtime: dict[str, Any]) -> None:
    nodes = ray_runtime["nodes"]

    async def main() -> tuple[dict[str, Any], int]:
        async with await IsolateWorker.spawn(
            worker_entries.Recorder, 1, resources={"node_a": 1}
        ) as worker:
            port: ReceivePort[Any] = ReceivePort()
            user = await Isolate.spawn(
                worker_entries.remote_user, (port.send_port, worker), resources={"node_b": 1}
            )
            answers: dict[str, Any] = await anext(port)
            ours = await worker.get("total")  # the main isolate calls it too
            port.close()
            user.kill()
        return answers, ours

    answers, ours = run(main())
    assert answers["here"] == nodes["b"] and answers["worker_node"] == nodes["a"]
    assert (answers["total"], answers["later"], answers["items"]) == (6, 7, [0, 10, 20])
    assert answers["failed"] == "from afar"
    assert ours == 7
