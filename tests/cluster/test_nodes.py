"""Isolates across real Ray nodes: placement, ports, handles and data crossing, node loss."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rayisolates import Isolate, ReceivePort, RemoteError, SendPort, TransferableTypedData

from .. import entries
from ..support import in_object_store, run

MB = 1024 * 1024


def node_id() -> str:
    return str(ray.get_runtime_context().get_node_id())


def announce_then_hold(job: tuple[SendPort[Any], str]) -> str:
    """Tell where we run; on ``doomed_node``, hold on until the node is gone."""
    reply, doomed_node = job
    here = node_id()
    reply.send(("started", here))
    while here == doomed_node:
        time.sleep(0.1)
    return f"ran on {here}"


def on(node: str) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node, soft=False)


def test_runs_placed_by_resource_affinity_and_spread(ray_runtime: dict[str, Any]) -> None:
    nodes = ray_runtime["nodes"]
    by_resource = Isolate.run(node_id, num_cpus=0, resources={"node_a": 1})
    by_affinity = Isolate.run(node_id, scheduling_strategy=on(nodes["b"]))
    spread = [Isolate.run(node_id, scheduling_strategy="SPREAD") for _ in range(6)]
    assert by_resource.result(timeout=60) == nodes["a"]
    assert by_affinity.result(timeout=60) == nodes["b"]
    assert len({future.result(timeout=60) for future in spread}) >= 2


def test_ports_and_send_ports_cross_nodes(ray_runtime: dict[str, Any]) -> None:
    nodes = ray_runtime["nodes"]

    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(entries.echo, port.send_port, resources={"node_a": 1})
        echo: SendPort[Any] = await anext(port)
        relay_port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(entries.forwarder, relay_port.send_port, resources={"node_b": 1})
        relay: SendPort[Any] = await anext(relay_port)
        echo.send("main -> node a -> main")
        got = [await anext(port)]
        relay.send((echo, "main -> node b -> node a -> main"))  # a SendPort from b to a
        got.append(await anext(port))
        echo.send(relay)  # and back from a
        got.append(await anext(port) == relay)
        relay.send(None)
        echo.send(None)
        await anext(port)
        port.close()
        relay_port.close()
        return got

    assert run(main()) == ["main -> node a -> main", "main -> node b -> node a -> main", True]
    assert nodes["a"] != nodes["b"]


def test_a_handle_on_one_node_kills_an_isolate_on_another(ray_runtime: dict[str, Any]) -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        target = await Isolate.spawn(
            entries.controlled, port.send_port, resources={"node_a": 1}, on_exit=port.send_port
        )
        await anext(port)
        killer = await Isolate.spawn(entries.controlled, port.send_port, resources={"node_b": 1})
        killer_port, _ = await anext(port)
        killer_port.send(("kill", target))
        got = sorted([await anext(port), await anext(port)], key=str)
        killer.kill()
        port.close()
        return got

    assert run(main()) == [None, "kill sent"]


def test_a_large_array_crosses_to_a_node_once(ray_runtime: dict[str, Any]) -> None:
    nodes = ray_runtime["nodes"]
    array = np.arange(100 * MB // 8, dtype=np.int64)

    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(
            entries.array_inspector, (port.send_port, None), resources={"node_a": 1}
        )
        second: SendPort[Any] = await anext(port)
        await Isolate.spawn(
            entries.array_inspector, (port.send_port, second), resources={"node_a": 1}
        )
        first: SendPort[Any] = await anext(port)
        first.send(array)
        reports = [await anext(port), await anext(port)]
        port.close()
        return reports

    first, second = run(main())
    for report in (first, second):
        assert report["node"] == nodes["a"]
        assert report["sum"] == int(array.sum())
        assert report["read_only"] and report["in_store"]
    assert first["ref"] is not None and first["ref"] == second["ref"]  # one object, one crossing


def test_exit_hands_a_large_array_across_nodes(ray_runtime: dict[str, Any]) -> None:
    async def main() -> Any:
        with ReceivePort[Any]() as port:
            await Isolate.spawn(
                entries.exit_with_array_and_node,
                (port.send_port, 50 * MB // 8),
                resources={"node_b": 1},
            )
            return await anext(port)

    node, array = run(main())
    assert node == ray_runtime["nodes"]["b"]
    assert array.sum() == 50 * MB // 8
    assert in_object_store(array) and not array.flags.writeable


def test_transferable_typed_data_across_nodes() -> None:
    numbers = np.arange(1_000_000, dtype=np.int64)

    async def main() -> Any:
        with ReceivePort[Any]() as port:
            data = TransferableTypedData.from_list([numbers])
            await Isolate.spawn(
                entries.transfer_back, (port.send_port, data), resources={"node_b": 1}
            )
            return await anext(port)

    total, read_only, answer = run(main())
    assert total == int(numbers.sum()) and read_only
    assert np.frombuffer(answer.materialize(), dtype=np.int64)[-1] == 2 * 999_999


@pytest.mark.timeout(240)
def test_node_loss_fires_exit_listeners_and_ends_runs(cluster: Cluster) -> None:
    doomed = cluster.add_node(
        num_cpus=1, resources={"node_doomed": 1000}, object_store_memory=200 * MB
    )
    cluster.wait_for_nodes()
    doomed_id = doomed.node_id

    async def main() -> dict[str, Any]:
        port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(
            entries.controlled, port.send_port, resources={"node_doomed": 1}, on_exit=port.send_port
        )
        await anext(port)
        runs: ReceivePort[Any] = ReceivePort()
        job = (runs.send_port, doomed_id)
        lost = Isolate.run(announce_then_hold, job, num_cpus=0, resources={"node_doomed": 1})
        retried = Isolate.run(
            announce_then_hold,
            job,
            num_cpus=0,
            max_retries=1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(doomed_id, soft=True),
        )
        assert [await anext(runs), await anext(runs)] == [("started", doomed_id)] * 2
        started = time.perf_counter()
        cluster.remove_node(doomed, allow_graceful=False)
        assert await anext(port) is None  # the exit listener
        listener_seconds = time.perf_counter() - started
        with pytest.raises(RemoteError, match="ended without result"):
            await lost
        retried_on = await retried
        port.close()
        runs.close()
        return {"listener_seconds": listener_seconds, "retried_on": retried_on}

    outcome = run(main(), timeout=200)
    assert outcome["retried_on"].startswith("ran on ") and doomed_id not in outcome["retried_on"]
    print(f"node loss reached the exit listener after {outcome['listener_seconds']:.1f} s")
