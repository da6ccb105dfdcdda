"""The control plane: kill, pause/resume, ping, exit and error listeners, every ending."""

from __future__ import annotations

import os
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
