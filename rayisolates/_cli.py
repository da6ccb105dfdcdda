"""The ``rayisolates`` command line: ``demo``, ``bench`` and ``status``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._demo import demo
from ._status import status
from ._version import __version__
from .bench import bench, plot

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rayisolates", description="Dart's isolate model for Python, on Ray."
    )
    parser.add_argument("--version", action="version", version=f"rayisolates {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="show isolates at work on a local Ray or a cluster")
    demo.add_argument(
        "--address", help="Ray cluster to run on (default: RAY_ADDRESS, else a local Ray)"
    )
    bench = commands.add_parser("bench", help="measure rayisolates next to raw Ray and others")
    bench.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    bench.add_argument(
        "--json",
        metavar="FILE",
        help="also write the raw readings to FILE, and the machine, versions and date "
        "beside it (FILE.json -> FILE.meta.json)",
    )
    bench.add_argument("--plot", metavar="FILE.png", help="also draw the ratios (needs matplotlib)")
    bench.add_argument("--address", help="Ray cluster to measure on (default: a local Ray)")
    bench.add_argument(
        "--from",
        dest="saved",
        nargs="+",
        metavar="FILE.json",
        help="with --plot: draw runs saved with --json instead of measuring "
        "(a figure named again in a later file replaces the earlier one)",
    )
    bench.add_argument(
        "--only",
        metavar="NAMES",
        help="only the cases whose name holds one of these comma-separated words "
        "(e.g. pool,spawn); the names are listed when none matches",
    )
    bench.add_argument(
        "--across-nodes",
        action="store_true",
        help="measure what crosses nodes instead: on three Ray nodes started on this machine "
        "and shut down after, or with --address on that cluster, which needs two nodes other "
        "than the driver's holding the custom resources node_a and node_b (ray start "
        """--resources '{"node_a": 10}', and the same with node_b)""",
    )
    inspect = commands.add_parser(
        "status", help="the isolates, ports and pools of the programs running on a cluster"
    )
    inspect.add_argument(
        "--address",
        help="the cluster, as ray.init takes it: HOST:PORT of the head, or auto "
        "(default: RAY_ADDRESS, else auto)",
    )
    inspect.add_argument("--json", action="store_true", help="JSON for scripts, not tables")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    arguments = _parser().parse_args(argv)
    if arguments.command == "demo":
        return demo(address=arguments.address)
    if arguments.command == "bench" and arguments.saved:
        if not arguments.plot:
            raise SystemExit("rayisolates bench --from needs --plot FILE.png: what to draw")
        return plot(arguments.saved, arguments.plot)
    if arguments.command == "bench":
        return bench(
            quick=arguments.quick,
            json_path=arguments.json,
            address=arguments.address,
            plot_path=arguments.plot,
            across_nodes=arguments.across_nodes,
            only=arguments.only,
        )
    if arguments.command == "status":
        return status(address=arguments.address, as_json=arguments.json)
    raise AssertionError(f"unhandled command {arguments.command!r}")
