"""The ``metergw`` command line.

Subcommands live in their own modules, listed in one explicit table. Each
module has ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; heavy
imports stay inside ``run`` so that ``metergw --help`` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

COMMANDS: dict[str, str] = {
    "check-config": "gateway.cli.check_config",
    "read": "gateway.cli.read",
    "scan": "gateway.cli.scan",
    "decode": "gateway.cli.decode",
    "run": "gateway.cli.run",
    "status": "gateway.cli.status",
    "schema": "gateway.cli.schema",
    "query": "gateway.cli.query",
    "report": "gateway.cli.report",
    "backfill": "gateway.cli.backfill",
}


def _load(module: str) -> ModuleType:
    return importlib.import_module(module)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metergw",
        description="metergw: meter gateway for DL/T 645, Modbus and MQTT concentrators",
    )
    from gateway.cli.version import version

    parser.add_argument("--version", action="version", version=f"metergw {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        mod = _load(module)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE, what ``cat`` or ``seq`` end with when the reader goes away."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metergw`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args._run(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader stopped (``| head -1``): nothing is wrong, and nothing more can be
        # written. Point stdout at /dev/null so the interpreter's last flush is quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
