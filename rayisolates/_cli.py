"""The ``rayisolates`` command line: ``demo`` and ``bench``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._demo import demo
from .bench import bench

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rayisolates", description="Dart's isolate model for Python, on Ray."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="show isolates at work on a local Ray or a cluster")
    demo.add_argument(
        "--address", help="Ray cluster to run on (default: RAY_ADDRESS, else a local Ray)"
    )
    bench = commands.add_parser("bench", help="measure rayisolates next to raw Ray and others")
    bench.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    bench.add_argument("--json", metavar="FILE", help="also write the raw readings to FILE")
    bench.add_argument("--plot", metavar="FILE.png", help="also draw the ratios (needs matplotlib)")
    bench.add_argument("--address", help="Ray cluster to measure on (default: a local Ray)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    arguments = _parser().parse_args(argv)
    if arguments.command == "demo":
        return demo(address=arguments.address)
    if arguments.command == "bench":
        return bench(
            quick=arguments.quick,
            json_path=arguments.json,
            address=arguments.address,
            plot_path=arguments.plot,
        )
    raise AssertionError(f"unhandled command {arguments.command!r}")
