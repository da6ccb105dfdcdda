"""Isolate.spawn, Isolate.spawn_uri and Isolate.exit on the session's real Ray."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from ray.util.state import list_actors

from rayisolates import Isolate, IsolateSpawnException, ReceivePort, SendPort
from rayisolates._transport.wire import SpawnRequest

from . import entries
from .support import in_object_store, run, run_python

URI_SCRIPT = Path(__file__).with_name("uri_script.py")


def test_echo_round_trips_and_exit_message() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(entries.echo, port.send_port, on_exit=port.send_port)
        replies = aiter(port)
        worker: SendPort[Any] = await anext(replies)
        got = []
        for message in [1, "two", {"three": [3]}, (4.0, None)]:
            worker.send(message)
            got.append(await anext(replies))
        worker.send(None)
        got.append(await anext(replies))  # the Isolate.exit message
        got.append(await anext(replies))  # then on_exit's None
        port.close()
        return got

    assert run(main()) == [1, "two", {"three": [3]}, (4.0, None), "bye", None]


def test_sync_entry_point_ends_the_isolate_by_itself() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(entries.sync_hello, port.send_port, on_exit=port.send_port)
        got = [await anext(port), await anext(port)]
        port.close()
        return got

    hello, ended = run(main())
    assert hello[0] == "hello" and ended is None


def test_exit_hands_over_a_large_array_intact() -> None:
    count = 100 * 1024 * 1024 // 8

    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(
            entries.exit_with_array, (port.send_port, count), on_exit=port.send_port
        )
        got = [await anext(port), await anext(port), await anext(port)]
        port.close()
        return got

    before, array, ended = run(main())
    assert before == "before exit" and ended is None
    assert array.shape == (count,) and array.dtype == np.int64
    assert array[0] == 0 and array[-1] == count - 1
    assert int(array[:: count // 7].sum()) == sum(range(0, count, count // 7))
    assert not array.flags.writeable
    assert in_object_store(array)


def test_array_sent_just_before_the_isolate_ends_outlives_it() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(
            entries.send_array_then_return, (port.send_port, 2_000_000), on_exit=port.send_port
        )
        got = [await anext(port), await anext(port)]
        port.close()
        return got

    array, ended = run(main())
    assert ended is None
    assert array.sum() == 14_000_000


def test_spawn_uri_module_function_with_zero_one_and_two_parameters() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        for name in ("uri_zero", "uri_one", "uri_two"):
            await Isolate.spawn_uri(
                f"tests.entries:{name}",
                ["a", "b"],
                port.send_port,
                on_exit=port.send_port,
                on_error=port.send_port,  # a main called with the wrong arguments reports here
            )
        got: list[Any] = []
        while got.count(None) < 3:  # each isolate's errors arrive before its exit notice
            got.append(await anext(port))
        port.close()
        return [message for message in got if message is not None]

    assert run(main()) == [("uri_two", ["a", "b"])]


def test_spawn_uri_python_file() -> None:
    async def main() -> Any:
        with ReceivePort[Any]() as port:
            await Isolate.spawn_uri(URI_SCRIPT, ["x"], port.send_port)
            return await anext(port)

    assert run(main()) == ("script", ["x"])


def test_isolate_shows_its_debug_name_in_the_state_api() -> None:
    async def main() -> Isolate:
        port: ReceivePort[Any] = ReceivePort()
        isolate = await Isolate.spawn(entries.sleeper, port.send_port, debug_name="named-worker")
        stop: SendPort[Any] = await anext(port)
        # This session's cluster by address: another Ray on the machine must not confuse it.
        address = ray.get_runtime_context().gcs_address
        alive = list_actors(address=address, filters=[("state", "=", "ALIVE")])
        names = {actor.name for actor in alive}
        stop.send("stop")
        port.close()
        assert "named-worker" in names
        return isolate

    isolate = run(main())
    assert isolate.debug_name == "named-worker"


def test_isolate_handle_survives_pickling() -> None:
    async def main() -> Isolate:
        port: ReceivePort[Any] = ReceivePort()
        isolate = await Isolate.spawn(entries.sleeper, port.send_port, debug_name="pickled")
        (await anext(port)).send("stop")
        port.close()
        return isolate

    isolate = run(main())
    copy = pickle.loads(pickle.dumps(isolate))
    assert copy == isolate and hash(copy) == hash(isolate)
    assert copy.debug_name == "pickled"
    assert copy.terminate_capability == isolate.terminate_capability


def test_entry_point_that_is_not_callable() -> None:
    with pytest.raises(IsolateSpawnException, match="not callable"):
        Isolate.spawn(entries.NOT_CALLABLE, None)  # type: ignore[arg-type]


def test_unsendable_spawn_message_chains_the_type_error() -> None:
    with pytest.raises(IsolateSpawnException, match="generator") as caught:
        Isolate.spawn(entries.sync_hello, (i for i in range(3)))
    assert isinstance(caught.value.__cause__, TypeError)


def test_missing_module_and_function_raise_when_awaited() -> None:
    with pytest.raises(IsolateSpawnException, match="No module named") as missing_module:
        Isolate.spawn_uri("tests.no_such_module:main", [], None).result(timeout=60)
    assert isinstance(missing_module.value.__cause__, ModuleNotFoundError)
    with pytest.raises(IsolateSpawnException, match="no_such_function"):
        Isolate.spawn_uri("tests.entries:no_such_function", [], None).result(timeout=60)
    with pytest.raises(IsolateSpawnException, match="not callable"):
        Isolate.spawn_uri("tests.entries:NOT_CALLABLE", [], None).result(timeout=60)
    with pytest.raises(IsolateSpawnException, match="no Python file"):
        Isolate.spawn_uri("tests/no_such_file.py", [], None)


def test_unknown_spawn_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"unknown option.*cpus"):
        Isolate.spawn(entries.sync_hello, None, cpus=1)


POOLED = """
import asyncio
import rayisolates
from rayisolates import Isolate, ReceivePort
from tests import entries

rayisolates.init(isolate_pool=2)

async def main():
    port = ReceivePort()
    names = []
    for index in range(3):  # two from the pool, one started fresh (or refilled)
        await Isolate.spawn(entries.report_identity, port.send_port, debug_name=f"pooled-{index}")
        names.append((await anext(port))[0])
    port.close()
    print(names)

asyncio.run(main())
rayisolates.shutdown()
"""


def test_spawns_from_the_isolate_pool_of_init(ray_runtime: dict[str, str]) -> None:
    output = run_python(POOLED, env={"RAY_ADDRESS": ray_runtime["gcs_address"]})
    assert output.strip().splitlines()[-1] == "['pooled-0', 'pooled-1', 'pooled-2']"


PRELOADED = """
import asyncio
import rayisolates
from rayisolates import Isolate, ReceivePort
from tests import preloaded_entry

rayisolates.init(isolate_pool=2)

async def main():
    port = ReceivePort()
    seen = []
    for _ in range(30):  # until a host started after the first spawn serves one
        await Isolate.spawn(preloaded_entry.report_preloaded, port.send_port)
        seen.append(await anext(port))
        if seen[-1]:
            break
    port.close()
    print(seen)

asyncio.run(main())
rayisolates.shutdown()
"""


def test_warm_hosts_import_the_modules_of_recent_entry_points(
    ray_runtime: dict[str, str],
) -> None:
    """The pool filled before any spawn imports at the spawn; hosts started after it have
    the first entry's module already (a warm spawn then costs no import)."""
    output = run_python(PRELOADED, env={"RAY_ADDRESS": ray_runtime["gcs_address"]})
    seen = eval(output.strip().splitlines()[-1])
    assert seen[0] is False and seen[-1] is True, seen


def test_entry_modules_named_for_warm_hosts() -> None:
    from rayisolates._spawn import _module_of

    assert _module_of(entries.sync_hello) == "tests.entries"
    assert _module_of(lambda reply: None) is None
    assert _module_of(sorted) == "builtins"

    def local(reply: Any) -> None:
        pass

    assert _module_of(local) is None


LEASED = """
import asyncio
import ray
import rayisolates
from rayisolates import Isolate, IsolateSpawnException, ReceivePort
from rayisolates._context.context import current
from tests import entries

rayisolates.init(isolate_pool=2)
leases = current().runtime.leases

async def lease_held():
    for _ in range(1200):
        if leases.held:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the driver never held a warm host")

async def main():
    seen = []
    port, exits, listened = ReceivePort(), ReceivePort(), ReceivePort()
    await lease_held()
    used = leases.used
    # into a leased host: its name, its on_exit, another isolate's exit listener
    leased = await Isolate.spawn(
        entries.sleeper, port.send_port, debug_name="leased", on_exit=exits.send_port
    )
    seen.append(leases.used == used + 1)
    stop = await anext(port)
    await Isolate.spawn(entries.listen_then_exit, (listened.send_port, leased, 10))
    await anext(listened)  # the listener's own ref: it has asked
    leased.kill(priority=Isolate.IMMEDIATE)
    seen.append(await anext(exits))  # on_exit: None
    seen.append(int((await anext(listened))[0]))  # the listener's response
    # an entry that ends its process at once still spawns, its on_exit fires
    for _ in range(3):
        await lease_held()
        await Isolate.spawn(entries.exit_at_once, None, on_exit=exits.send_port)
        seen.append(await anext(exits))
    # an entry that cannot load fails its spawn, and the next spawn works
    await lease_held()
    try:
        await Isolate.spawn_uri("no_such_module_here:main", None, None)
        seen.append("spawned")
    except IsolateSpawnException as error:
        seen.append("no_such_module_here" in str(error))
    # held hosts that died meanwhile: the spawn goes to the supervisor
    await lease_held()
    for lease in list(leases._held):
        ray.kill(lease.host)
    await Isolate.spawn(entries.report_identity, port.send_port, debug_name="after")
    seen.append((await anext(port))[0])
    for each in (port, exits, listened):
        each.close()
    print(seen)

asyncio.run(main())
rayisolates.shutdown()
"""


def test_spawns_into_warm_hosts_the_driver_holds(ray_runtime: dict[str, str]) -> None:
    """The driver spawns into hosts leased from the pool without asking the supervisor;
    on_exit, exit listeners of other isolates and immediate kills act on them, an entry
    that cannot load fails its spawn, and a held host that died sends the spawn to the
    supervisor."""
    output = run_python(LEASED, env={"RAY_ADDRESS": ray_runtime["gcs_address"]}, timeout=150)
    seen = eval(output.strip().splitlines()[-1])
    assert seen == [True, None, 9, None, None, None, True, "after"], seen


REFILLED = """
import asyncio
import ray
import rayisolates
from rayisolates import Isolate, ReceivePort
from rayisolates._context.context import current
from tests import entries

rayisolates.init(isolate_pool=2)

async def warm_hosts():
    return (await current().sender.supervisor().status.remote())["idle_pooled_hosts"]

async def main():
    port = ReceivePort()
    for wave in range(6):  # isolates that end at once, often before the supervisor hears Started
        size = 1 + wave % 3
        spawns = [Isolate.spawn(entries.sync_hello, port.send_port) for _ in range(size)]
        await asyncio.gather(*spawns)
        for _ in range(size):
            await anext(port)
    for _ in range(900):
        if await warm_hosts() == 2:
            break
        await asyncio.sleep(0.1)
    port.close()
    print(current().runtime.leases.used > 0, await warm_hosts())

asyncio.run(main())
rayisolates.shutdown()
"""


def test_the_isolate_pool_refills_whatever_order_its_hosts_end_in(
    ray_runtime: dict[str, str],
) -> None:
    """Spawns into held hosts whose isolates end before the supervisor hears they started
    still free their places in the pool: it is full again afterwards."""
    output = run_python(REFILLED, env={"RAY_ADDRESS": ray_runtime["gcs_address"]}, timeout=150)
    assert output.strip().splitlines()[-1] == "True 2"


SWEPT = """
import asyncio
import itertools
import random
import sys
import rayisolates
from rayisolates import Isolate, ReceivePort
from rayisolates._context.context import current
from tests import entries

rayisolates.init(isolate_pool=2)
leases = current().runtime.leases
seed = int(sys.argv[1]) if len(sys.argv) > 1 else random.randrange(1 << 30)
rng = random.Random(seed)

async def lease_held():
    for _ in range(1200):
        if leases.held:
            return
        await asyncio.sleep(0.05)

async def one(index, fatal, paused, on_error, by_kill):
    name = rng.choice([None, f"swept-{index}"])
    replies, exits, errors = ReceivePort(), ReceivePort(), ReceivePort()
    isolate = await Isolate.spawn(
        entries.probe,
        replies.send_port,
        debug_name=name,
        errors_are_fatal=fatal,
        paused=paused,
        on_exit=exits.send_port,
        on_error=errors.send_port if on_error else None,
    )
    if paused:
        isolate.resume(isolate.pause_capability)
    seen_name, control = await anext(replies)
    wrong = [] if seen_name == name else [("name", seen_name, name)]
    control.send("raise")
    if on_error:
        report = await anext(errors)
        wrong += [] if report[0] == "probe raised" else [("error", report)]
    if not fatal:  # alive, and its pause capability works
        held = isolate.pause()
        control.send("alive?")
        isolate.resume(held)
        answer = await anext(replies)
        wrong += [] if answer == "alive" else [("alive", answer)]
        if by_kill:
            isolate.kill(priority=rng.choice([Isolate.IMMEDIATE, Isolate.BEFORE_NEXT_EVENT]))
        else:
            control.send(None)
    ended = await anext(exits)  # a fatal error ends it by itself
    wrong += [] if ended is None else [("exit", ended)]
    for port in (replies, exits, errors):
        port.close()
    return wrong

async def main():
    wrong = []
    cases = list(itertools.product([False, True], repeat=4))
    rng.shuffle(cases)
    for index, case in enumerate(cases):
        if rng.random() < 0.75:  # else maybe none held: the supervisor's pool, or a new host
            await lease_held()
        wrong += [(case, each) for each in await one(index, *case)]
    print(seed, leases.used, wrong)

asyncio.run(main())
rayisolates.shutdown()
"""


@pytest.mark.slow
def test_spawns_from_the_pool_keep_what_their_spawn_says(ray_runtime: dict[str, str]) -> None:
    """Warm hosts are put together before their spawn (``wire.Setup``); every combination
    of what a spawn says (fatal errors or not, paused, an error listener, ended by a
    message or a kill of either priority, a debug name or none), leased or not, acts as
    said: the name, the error report, pause and kill with the spawn's capabilities."""
    output = run_python(SWEPT, env={"RAY_ADDRESS": ray_runtime["gcs_address"]}, timeout=240)
    seed, used, wrong = output.strip().splitlines()[-1].split(" ", 2)
    assert int(used) > 0, "no spawn went into a leased host"
    assert wrong == "[]", f"seed {seed}: {wrong}"


def test_a_start_with_another_setup_than_warm_had_puts_the_isolate_together_anew(
    ray_runtime: dict[str, str],
) -> None:
    """A host warmed with one ``Setup`` and started with another drops what warm put
    together (its socket closes) and runs the isolate as the start's ``Setup`` says: its
    terminate capability is the one that acts."""
    from ray import cloudpickle

    from rayisolates._capability import Capability
    from rayisolates._context.context import current
    from rayisolates._runtime.host import IsolateHost, host_options
    from rayisolates._transport.codec import encode
    from rayisolates._transport.direct import Reach
    from rayisolates._transport.handshake import new_secret
    from rayisolates._transport.wire import CONTROL_PORT, Setup, new_id

    context = current()
    isolate_id = new_id("isolate")
    options = host_options({"resources": {"node_head": 1}})  # the driver's node: its sockets
    host_class: Any = IsolateHost
    host = host_class.options(**options).remote(None, isolate_id, context.sender.supervisor())
    warmed = Setup(context.isolate_id, Capability(), Capability(), Reach(new_secret(), False))
    given = Setup(context.isolate_id, Capability(), Capability(), None)
    port: ReceivePort[Any] = ReceivePort()
    try:
        ray.get(host.warm.remote([], warmed), timeout=60)
        assert isolate_id in entries.direct_sockets()  # warm put it together, listening
        request = SpawnRequest(
            spawn_id=new_id("spawn"),
            entry=cloudpickle.dumps(entries.probe),
            uri=None,
            args=None,
            message=encode(port.send_port),
            paused=False,
            errors_are_fatal=True,
            on_exit=None,
            on_error=None,
            debug_name="set-up-again",
            options={},
        )
        ray.get(host.start.remote(request, given), timeout=60)
        assert isolate_id not in entries.direct_sockets()  # no direct channels in ``given``
        host.release.remote()
        name, control = run(anext(port))
        assert name == "set-up-again"
        control_port: SendPort[Any] = SendPort(isolate_id, CONTROL_PORT, host)
        isolate = Isolate._handle(control_port, given.pause, given.terminate, name)
        context.runtime.spawned(isolate)  # as a spawn does: the driver polls it
        # Needs the start's terminate capability (warm's would be refused and the error
        # below end it); in order with the messages that follow.
        isolate.set_errors_fatal(False)
        control.send("raise")
        control.send("alive?")
        assert run(anext(port)) == "alive"
        control.send(None)  # its last port closes: it ends
        ray.get(host.lifetime.remote(), timeout=60)
    finally:
        port.close()
        ray.kill(host)


def test_negative_pool_is_refused() -> None:
    import rayisolates

    with pytest.raises(ValueError, match="isolate_pool"):
        rayisolates.init(isolate_pool=-1)
