"""What a user's terminal shows: isolates' own output, not Ray's system messages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rayisolates._demo import NO_CHECKOUT, examples_folder
from rayisolates.bench import ratio_text, value_text

from .support import ROOT, run_python

NOISY = """
import asyncio, os, time
import rayisolates
from rayisolates import Isolate, ReceivePort
from rayisolates._context import quiet as _quiet

def hello(reply):
    print("hello from an isolate", flush=True)
    reply.send("hello")

def crash(reply):
    os._exit(3)

async def main():
    port = ReceivePort()
    await asyncio.gather(*(Isolate.spawn(hello, port.send_port) for _ in range(12)))
    for _ in range(12):
        await anext(port)
    await Isolate.spawn(crash, None, on_exit=port.send_port)
    await anext(port)

rayisolates.init(address={address!r})
asyncio.run(main())
# Ray reports the crash to the driver asynchronously: wait until it has come.
deadline = time.monotonic() + 30
while {wait_for_drop} and _quiet.dropped == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
print("dropped", _quiet.dropped, flush=True)
time.sleep({linger})
rayisolates.shutdown()
"""


def _noisy_program(address: str, show: bool) -> str:
    code = NOISY.format(address=address, wait_for_drop=not show, linger=3 if show else 0)
    return run_python(code, env={"RAYISOLATES_RAY_LOGS": "1" if show else "0"}, timeout=120)


@pytest.mark.timeout(150)
def test_ray_system_messages_stay_out_of_the_terminal(ray_runtime: dict[str, str]) -> None:
    output = _noisy_program(ray_runtime["gcs_address"], show=False)
    assert "hello from an isolate" in output  # what isolates print still shows
    assert "dropped 0" not in output  # Ray did report the crash...
    assert "(raylet)" not in output  # ...and it was kept out


@pytest.mark.timeout(150)
def test_the_switch_shows_ray_system_messages_again(ray_runtime: dict[str, str]) -> None:
    output = _noisy_program(ray_runtime["gcs_address"], show=True)
    assert "(raylet)" in output
    assert "A worker died" in output


INSTALLED_DEMO = """
import sys
# Look past the editable install of this checkout, as an installed package would.
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
import rayisolates
assert rayisolates.__file__.startswith({site!r}), rayisolates.__file__
from rayisolates._cli import main
sys.exit(main(["demo"]))
"""


def test_demo_from_an_installed_package_says_it_needs_a_checkout(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(ROOT / "rayisolates", site / "rayisolates")
    finished = subprocess.run(
        [sys.executable, "-c", INSTALLED_DEMO.format(site=str(site))],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2, finished.stderr
    assert NO_CHECKOUT in finished.stderr
    assert examples_folder([tmp_path]) is None


@pytest.mark.parametrize(
    ("ratio", "text"),
    [(108.92, "109x"), (1234.5, "1,234x"), (44.67, "44.7x"), (1.364, "1.36x"), (0.27, "0.27x")],
)
def test_ratios_read_as_people_write_them(ratio: float, text: str) -> None:
    assert ratio_text(ratio) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(456_789.4, "456,789"), (538.7, "539"), (37.86, "37.9"), (2.114, "2.11"), (0.03541, "0.0354")],
)
def test_values_read_as_people_write_them(value: float, text: str) -> None:
    assert value_text(value) == text
