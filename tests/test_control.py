"""The control plane: kill, pause/resume, ping, exit and error listeners, every ending."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from typing import Any

import pytest

from rayisolates import Capability, Isolate, ReceivePort, RemoteError, SendPort

from . import entries
from .support import run

Spawned = tuple[Isolate, SendPort[Any], int]


async def spawn_controlled(port: ReceivePort[Any], **options: Any) -> Spawned:
    isolate = await Isolate.spawn(entries.controlled, port.send_port, **options)
    worker, pid = await anext(port)
    return isolate, worker, pid


async def assert_ended_once(isolate: Isolate, port: ReceivePort[Any], response: Any) -> None:
    """The exit response arrives, and nothing like it after: a late listener comes next."""
    assert await anext(port) == response
    isolate.add_on_exit_listener(port.send_port, "late")
    assert await anext(port) == "late"


def kill_next(isolate: Isolate, worker: SendPort[Any], pid: int) -> None:
    isolate.kill()


def kill_immediate(isolate: Isolate, worker: SendPort[Any], pid: int) -> None:
    isolate.kill(priority=Isolate.IMMEDIATE)


def sigkill(isolate: Isolate, worker: SendPort[Any], pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def command(name: str) -> Callable[[Isolate, SendPort[Any], int], None]:
    def send(isolate: Isolate, worker: SendPort[Any], pid: int) -> None:
        worker.send(name)

    return send


ENDINGS = {
    "kill before next event": kill_next,
    "kill immediate": kill_immediate,
    "fatal uncaught error": command("raise"),
    "os._exit": command("crash"),
    "segfault": command("segfault"),
    "SIGKILL from outside": sigkill,
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_every_ending_fires_the_exit_listener_once(ending: str) -> None:
    async def main() -> None:
        port: ReceivePort[Any] = ReceivePort()
        isolate, worker, pid = await spawn_controlled(port)
        isolate.add_on_exit_listener(port.send_port, ("ended", ending))
        probe: ReceivePort[Any] = ReceivePort()
        isolate.ping(probe.send_port, "registered")  # control messages act in order:
        assert await anext(probe) == "registered"  # the listener is in place by now
        probe.close()
        ENDINGS[ending](isolate, worker, pid)
        await assert_ended_once(isolate, port, ("ended", ending))
        port.close()

    run(main())


def test_isolate_exit_message_arrives_before_the_exit_response() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        isolate, worker, _ = await spawn_controlled(port, on_exit=port.send_port)
        worker.send("exit")
        got = [await anext(port)]
        await assert_ended_once(isolate, port, None)
        port.close()
        return got

    assert run(main()) == ["exited"]


def test_kill_immediate_stops_an_isolate_stuck_in_a_blocking_call() -> None:
    async def main() -> None:
        port: ReceivePort[Any] = ReceivePort()
        isolate, worker, _ = await spawn_controlled(port, on_exit=port.send_port)
        worker.send("block")
        assert await anext(port) == "blocking"
        isolate.kill(priority=Isolate.IMMEDIATE)
        await assert_ended_once(isolate, port, None)
        port.close()

    run(main())


def test_non_fatal_errors_are_reported_and_the_isolate_goes_on() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        errors: ReceivePort[Any] = ReceivePort()
        isolate, worker, _ = await spawn_controlled(
            port, errors_are_fatal=False, on_error=errors.send_port, on_exit=port.send_port
        )
        worker.send("raise")
        description, stack = await anext(errors)
        worker.send("still here")
        alive = await anext(port)
        isolate.set_errors_fatal(True)
        stream = isolate.errors
        isolate.ping(port.send_port, "listening")  # control messages act in order
        assert await anext(port) == "listening"
        worker.send("raise")
        reported = await anext(stream)
        rest = [error async for error in stream]
        await assert_ended_once(isolate, port, None)
        port.close()
        errors.close()
        return [description, "on_message" in stack, alive, type(reported), str(reported), rest]

    description, has_stack, alive, kind, text, rest = run(main())
    assert description == "raised in a handler" and has_stack
    assert alive == "still here"
    assert kind is RemoteError and text == "raised in a handler"
    assert rest == []


def test_pause_queues_messages_until_resume_while_ping_answers() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        isolate, worker, _ = await spawn_controlled(port)
        resume = isolate.pause()
        isolate.ping(port.send_port, "paused")
        assert await anext(port) == "paused"
        for i in range(5):
            worker.send(i)
        isolate.ping(port.send_port, "still answering")
        answered = await anext(port)
        isolate.resume(Capability())  # a wrong capability does nothing
        isolate.ping(port.send_port, "after wrong resume", priority=Isolate.BEFORE_NEXT_EVENT)
        still_paused = await anext(port)
        isolate.resume(resume)
        delivered = [await anext(port) for _ in range(5)]
        isolate.kill()
        port.close()
        return [answered, still_paused, delivered]

    assert run(main()) == ["still answering", "after wrong resume", [0, 1, 2, 3, 4]]


def test_pauses_with_one_capability_need_one_resume_two_need_two() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        isolate, worker, _ = await spawn_controlled(port)
        first = isolate.pause()
        isolate.pause(first)
        second = isolate.pause()
        isolate.resume(first)
        isolate.ping(port.send_port, "one resumed")
        assert await anext(port) == "one resumed"
        worker.send("held")
        isolate.ping(port.send_port, "still held")
        got = [await anext(port)]
        isolate.resume(second)
        got.append(await anext(port))
        isolate.kill()
        port.close()
        return got

    assert run(main()) == ["still held", "held"]


def test_spawned_paused_runs_the_entry_point_on_resume() -> None:
    async def main() -> Any:
        port: ReceivePort[Any] = ReceivePort()
        isolate = await Isolate.spawn(entries.sync_hello, port.send_port, paused=True)
        isolate.ping(port.send_port, "not started yet", priority=Isolate.BEFORE_NEXT_EVENT)
        got = [await anext(port)]
        assert isolate.pause_capability is not None
        isolate.resume(isolate.pause_capability)
        got.append((await anext(port))[0])
        port.close()
        return got

    assert run(main()) == ["not started yet", "hello"]


def test_a_handle_without_capabilities_cannot_kill_or_pause() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        isolate, worker, _ = await spawn_controlled(port, on_exit=port.send_port)
        restricted = Isolate(isolate.control_port)
        forged = Isolate(isolate.control_port, Capability(), Capability())
        for handle in (restricted, forged):
            handle.kill()
            handle.kill(priority=Isolate.IMMEDIATE)
            handle.pause()
        forged.ping(port.send_port, "pinged")
        got = [await anext(port)]
        worker.send("alive and not paused")
        got.append(await anext(port))
        isolate.kill()
        got.append(await anext(port))
        port.close()
        return got

    assert run(main()) == ["pinged", "alive and not paused", None]


def test_a_handle_sent_to_another_isolate_kills_from_there() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        watched: ReceivePort[Any] = ReceivePort()
        target, _, _ = await spawn_controlled(port)
        killer, killer_port, _ = await spawn_controlled(port)
        target.add_on_exit_listener(port.send_port, "target ended")
        killer_port.send(("watch", target, watched.send_port))
        assert await anext(port) == "watching"
        killer_port.send(("kill", target))
        got = sorted([await anext(port), await anext(port), await anext(watched)])
        killer.kill()
        port.close()
        watched.close()
        return got

    assert run(main()) == ["kill sent", "seen by a third", "target ended"]


def test_one_port_listens_once_with_the_last_response() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        isolate, _, _ = await spawn_controlled(port)
        isolate.add_on_exit_listener(port.send_port, "first")
        isolate.add_on_exit_listener(port.send_port, "second")
        isolate.kill()
        await assert_ended_once(isolate, port, "second")
        port.close()
        return []

    assert run(main()) == []


def test_removed_exit_listener_stays_silent() -> None:
    async def main() -> list[Any]:
        kept: ReceivePort[Any] = ReceivePort()
        removed: ReceivePort[Any] = ReceivePort()
        isolate, _, _ = await spawn_controlled(kept)
        isolate.add_on_exit_listener(removed.send_port, "should not arrive")
        isolate.add_on_exit_listener(kept.send_port, "kept")
        isolate.remove_on_exit_listener(removed.send_port)
        isolate.kill()
        got = [await anext(kept)]
        isolate.add_on_exit_listener(removed.send_port, "late")
        got.append(await anext(removed))
        kept.close()
        removed.close()
        return got

    assert run(main()) == ["kept", "late"]


def test_current_isolate_reports_its_debug_name() -> None:
    async def main() -> Any:
        with ReceivePort[Any]() as port:
            await Isolate.spawn(entries.report_identity, port.send_port, debug_name="who-am-i")
            return await anext(port)

    name, _ = run(main())
    assert name == "who-am-i"
    assert Isolate.current().debug_name == "main"


def test_the_main_isolate_answers_ping() -> None:
    async def main() -> Any:
        with ReceivePort[Any]() as port:
            Isolate.current().ping(port.send_port, ("main", "pong"))
            return await anext(port)

    assert run(main()) == ("main", "pong")


def test_an_error_in_a_task_nobody_awaited_reaches_error_listeners() -> None:
    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        errors: ReceivePort[Any] = ReceivePort()
        await Isolate.spawn(
            entries.failing_task,
            port.send_port,
            on_error=errors.send_port,
            on_exit=port.send_port,
        )
        await anext(port)
        description, stack = await anext(errors)
        ended = await anext(port)  # errors are fatal by default
        port.close()
        errors.close()
        return [description, "doomed" in stack, ended]

    assert run(main()) == ["'raised in a task nobody awaited'", True, None]


def test_messages_sent_after_a_pause_wait_for_the_resume_whatever_carries_them() -> None:
    """A pause and the messages sent after it act in the order sent, although the pause
    is a control record and the messages may take a direct channel: a ping sent after
    them (in order too) is answered first, the messages only after the resume."""

    async def main() -> list[Any]:
        port: ReceivePort[Any] = ReceivePort()
        isolate, worker, _ = await spawn_controlled(port)
        resume = isolate.pause()
        for i in range(5):
            worker.send(i)
        isolate.ping(port.send_port, "answered while paused", priority=Isolate.BEFORE_NEXT_EVENT)
        first = await anext(port)
        isolate.resume(resume)
        rest = [await anext(port) for _ in range(5)]
        isolate.kill()
        port.close()
        return [first, rest]

    assert run(main()) == ["answered while paused", [0, 1, 2, 3, 4]]


def control_script(rng: random.Random, pongs: SendPort[Any], length: int) -> list[Any]:
    """Random sends (small, large, carrying a port) mixed with pauses, resumes and pings,
    ending with every pause lifted and an ``"end"`` message."""
    capabilities = [Capability(), Capability()]
    steps: list[Any] = []
    for number in range(length):
        roll = rng.random()
        if roll < 0.6:
            kind = rng.choice(["small", "small", "large", "port"])
            extra = {"small": None, "large": bytes(150_000), "port": pongs}[kind]
            steps.append(("send", ("m", number, extra)))
        elif roll < 0.75:
            steps.append(("pause", rng.choice(capabilities)))
        elif roll < 0.9:
            steps.append(("resume", rng.choice(capabilities)))
        else:
            steps.append(("ping", ("ping", number)))
    steps += [("resume", capability) for capability in capabilities]
    steps.append(("send", ("m", "end", None)))
    return steps


def check_control_order(steps: list[Any], arrivals: list[Any]) -> None:
    """What arrived keeps the rules: every message once, in order; every ping answered;
    no message sent after a ping handled before it; no message sent while paused handled
    before a ping sent after it and before the resume that lifted the last pause."""
    sent = [value for action, value in steps if action == "send"]
    assert [value for value in arrivals if value[0] == "m"] == sent
    pings = sorted(value[1] for action, value in steps if action == "ping")
    assert sorted(value[1] for value in arrivals if value[0] == "ping") == pings
    arrived = {value[:2]: index for index, value in enumerate(arrivals)}
    paused: set[Any] = set()
    held: list[Any] = []  # sent while paused, the last pause not lifted since
    pinged: list[Any] = []
    for action, value in steps:
        if action == "send":
            for ping in pinged:
                assert arrived[ping[:2]] < arrived[value[:2]], f"{value} overtook {ping}"
            if paused:
                held.append(value)
        elif action == "ping":
            pinged.append(value)
            for message in held:
                assert arrived[value[:2]] < arrived[message[:2]], f"{message} ran while paused"
        elif action == "pause":
            paused.add(value)
        else:
            paused.discard(value)
            if not paused:
                held = []


@pytest.mark.parametrize("from_an_isolate", [False, True], ids=["from main", "from an isolate"])
def test_random_mixes_of_sends_and_controls_act_in_the_order_sent(from_an_isolate: bool) -> None:
    """Carriers mixed (direct channels, Ray, the object store, messages carrying ports)."""

    async def main() -> None:
        port: ReceivePort[Any] = ReceivePort()
        isolate, worker, _ = await spawn_controlled(port)
        controller = scripts = None
        if from_an_isolate:
            controller = await Isolate.spawn(entries.controller, port.send_port)
            scripts = await anext(port)
        for seed in range(12):
            steps = control_script(random.Random(seed), port.send_port, 40)
            if scripts is not None:
                scripts.send((isolate, worker, port.send_port, steps))
            else:
                entries.carry_out(isolate, worker, port.send_port, steps)
            arrivals: list[Any] = []
            while not arrivals or arrivals[-1] != ("m", "end", None):
                arrivals.append(await anext(port))
            try:
                check_control_order(steps, arrivals)
            except AssertionError as error:
                raise AssertionError(f"seed {seed}: {error}") from None
        isolate.kill()
        if controller is not None:
            controller.kill()
        port.close()

    run(main(), timeout=120)
