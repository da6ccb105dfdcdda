"""The one assembly of an isolate's process, without Ray: each kind gets the pieces its
row of the table says, and they are wired to each other (a send to an own port reaches
the port's consumer; a control record for itself reaches its actions; the direct
channels close with the isolate)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from rayisolates._capability import Capability
from rayisolates._runtime.assembly import Direct, Kind, Receiving, assemble, export_metrics
from rayisolates._sendport import SendPort
from rayisolates._transport.codec import INLINE
from rayisolates._transport.direct import Reach, direct_folder
from rayisolates._transport.handshake import new_secret
from rayisolates._transport.mailbox import Mailbox
from rayisolates._transport.wire import CONTROL_PORT, Control, Pause


class Life:
    """A runtime that does nothing: the pieces are what is tested."""

    def exit(self, port: Any, message: Any) -> NoReturn:
        raise AssertionError("not called")

    def spawned(self, isolate: Any) -> None:
        pass

    def spawn_leased(self, request: Any) -> None:
        return None

    def close(self) -> None:
        pass


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def call(handler: Any, message: Any) -> None:
    handler(message)


def no_supervisor() -> Any:
    raise AssertionError("nothing here needs the supervisor")


def test_a_worker_only_sends(loop: asyncio.AbstractEventLoop) -> None:
    context = assemble(
        Kind(
            "worker-1",
            None,
            route=None,
            loop=loop,
            runs_on_own_loop=False,
            supervisor=no_supervisor,
        ),
        Life(),
    )
    assert (context.ports, context.receiver, context.actions, context.endpoint) == (
        None,
        None,
        None,
        None,
    )
    with pytest.raises(RuntimeError, match="can send but not receive"):
        context.receiving()
    assert context.consumer_loop() is loop  # no loop runs here: its own

    async def inside() -> asyncio.AbstractEventLoop:
        return context.consumer_loop()

    assert asyncio.run(inside()) is not loop  # callbacks follow the running loop


@pytest.mark.parametrize("runs_on_own_loop", [False, True])
def test_an_isolate_that_receives_is_wired_to_itself(
    loop: asyncio.AbstractEventLoop, runs_on_own_loop: bool
) -> None:
    controls: list[Control] = []
    kills: list[str] = []
    pause = Capability()
    context = assemble(
        Kind(
            "isolate-1",
            "me",
            route="my route",
            loop=loop,
            runs_on_own_loop=runs_on_own_loop,
            supervisor=no_supervisor,
            receiving=Receiving(
                pause,
                Capability(),
                on_control=controls.append,
                kill=lambda: kills.append("killed"),
            ),
        ),
        Life(),
    )
    _, receiver, actions = context.receiving()
    assert actions.pause_capability is pause
    got: list[Any] = []
    arrived = threading.Event()

    def consume(message: Any) -> None:
        got.append(message)
        if len(got) == 3:
            arrived.set()

    mailbox: Mailbox[Any] = Mailbox(lambda: consume, call)
    mailbox.bind(loop)
    port: SendPort[Any] = SendPort("isolate-1", context.open_port(mailbox, True), "my route")
    for message in ("a", "b", "c"):
        context.send(port, message)  # to its own port: the local channel, on its loop
    assert arrived.wait(10) and got == ["a", "b", "c"]
    own_control: SendPort[Any] = SendPort("isolate-1", CONTROL_PORT, "my route")
    record = Pause(pause, Capability())
    context.control(own_control, record)  # a record for itself acts on it, in order
    assert controls == [record]
    relayed = Pause(pause, Capability())
    receiver.accept("other/control", 0, [(CONTROL_PORT, INLINE, relayed, None)])
    assert controls == [record, relayed]  # records from others arrive on its control port
    assert context.consumer_loop() is loop
    assert context.sender.sent_messages == 3 and not kills


def test_a_fatal_error_ends_the_isolate_and_direct_channels_close_with_it(
    loop: asyncio.AbstractEventLoop, socket_base: Path
) -> None:
    ended: list[str] = []
    folder = direct_folder("0123456789abcdef", base=str(socket_base))
    assert folder is not None
    context = assemble(
        Kind(
            "isolate-2",
            None,
            route=None,
            loop=loop,
            runs_on_own_loop=True,
            supervisor=no_supervisor,
            direct=Direct(Reach(new_secret(), across_nodes=False), folder, "a node", host=None),
            direct_on_loop=True,
            receiving=Receiving(
                Capability(),
                Capability(),
                on_control=lambda record: None,
                kill=lambda: ended.append("kill"),
                errors_are_fatal=True,
                fatal_error=lambda: ended.append("fatal"),
            ),
        ),
        Life(),
    )
    assert context.endpoint is not None and (folder / "isolate-2.sock").exists()
    context.errors.listeners.add(SendPort("isolate-2", 99, None))  # a closed port: dropped
    context.errors.uncaught(ValueError("boom"))
    assert ended == ["fatal"]
    context.close_channels()
    assert not folder.exists()  # its node's last endpoint: the folder goes with it


@pytest.mark.parametrize("later_name", [None, "named-later"])
def test_a_warm_isolate_is_named_and_exports_its_figures_from_its_spawn_on(
    loop: asyncio.AbstractEventLoop, later_name: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A warm host is put together before its spawn names it: its error reports read the
    name when they are made, and its figures are exported only from ``export_metrics``
    on, under that name."""
    context = assemble(
        Kind(
            "isolate-3",
            None,
            route=None,
            loop=loop,
            runs_on_own_loop=True,
            supervisor=no_supervisor,
            receiving=Receiving(
                Capability(), Capability(), on_control=lambda record: None, kill=lambda: None
            ),
        ),
        Life(),
    )
    assert context.metrics is None
    context.debug_name = later_name
    with caplog.at_level(logging.ERROR, logger="rayisolates"):
        context.errors.uncaught(ValueError("boom"))
    assert f"Uncaught error in isolate {later_name or 'isolate-3'}:" in caplog.text
    export_metrics(context)
    assert context.metrics is not None
    assert context.metrics._tags == {
        "isolate": later_name or "isolate-3",
        "isolate_id": "isolate-3",
    }
    context.close_channels()
