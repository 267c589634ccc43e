"""``metergw schema``: the config file's JSON Schema and its reference page.

``metergw schema`` prints the JSON Schema and ``--quantities`` the table of
quantity keys; ``--write`` updates ``config/schema.json``,
``docs/configuration.md`` and ``docs/quantities.md``; ``--check`` exits 1 when
any is stale (a test runs the same check). See :mod:`gateway.cli.reference`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = (
    "print the config JSON Schema or the quantity keys, or write/check config/schema.json, "
    "docs/configuration.md and docs/quantities.md"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="write every generated reference file")
    g.add_argument(
        "--quantities", action="store_true", help="print the quantity keys (docs/quantities.md)"
    )
    g.add_argument("--check", action="store_true", help="exit 1 if any of them is out of date")
    p.add_argument("--root", default=".", help="the repository root (default: current directory)")


def run(args: argparse.Namespace) -> int:
    from gateway.cli.reference import outputs, quantities_markdown, schema_text

    root = Path(args.root)
    if args.write:
        for path, text in outputs(root).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        return 0
    if args.check:
        stale = [
            str(p)
            for p, text in outputs(root).items()
            if not p.exists() or p.read_text(encoding="utf-8") != text
        ]
        for p in stale:
            print(f"{p}: out of date; run 'metergw schema --write'", file=sys.stderr)
        return 1 if stale else 0
    sys.stdout.write(quantities_markdown() if args.quantities else schema_text())
    return 0
