"""An IsolateWorker handle sent to an isolate on another node, and used there."""

from __future__ import annotations

from typing import Any

import pytest
from ray.cluster_utils import Cluster

from rayisolates import Isolate, IsolateWorker, ReceivePort, RemoteError

from .. import worker_entries
from ..support import run

pytestmark = pytest.mark.timeout(180)

MB = 1024 * 1024


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


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_node_loss_fails_the_workers_pending_and_later_calls(cluster: Cluster) -> None:
    doomed = cluster.add_node(
        num_cpus=1, resources={"node_doomed_worker": 1000}, object_store_memory=200 * MB
    )
    cluster.wait_for_nodes()

    async def main() -> list[str]:
        worker = await IsolateWorker.spawn(
            worker_entries.Recorder, resources={"node_doomed_worker": 1}
        )
        exits: ReceivePort[Any] = ReceivePort()
        worker.isolate.add_on_exit_listener(exits.send_port, "lost")
        gates: ReceivePort[Any] = ReceivePort()
        held = worker.gate(gates.send_port)
        await anext(gates)  # running on the doomed node
        cluster.remove_node(doomed, allow_graceful=False)
        outcomes = [await anext(exits)]
        for call in (held, worker.add(1)):
            with pytest.raises(RemoteError):
                await call
            outcomes.append("failed")
        exits.close()
        gates.close()
        return outcomes

    assert run(main(), timeout=200) == ["lost", "failed", "failed"]
