"""``metergw status``: the running daemon's ``/status`` as readable tables."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

HELP = "show the running gateway's buses, meters, buffer and recent events"

DEFAULT_URL = "http://127.0.0.1:8181"
EXIT_NO_ANSWER = 1
_UNLIMITED = 100_000
"""Columns to measure the tables' natural width in."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=None,
        help=f"the daemon's status API, e.g. 127.0.0.1:8181 (default {DEFAULT_URL})",
    )
    p.add_argument(
        "-c", "--config", metavar="FILE", help="take the status address from this config file"
    )
    p.add_argument("--json", action="store_true", help="print the raw /status JSON")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer")


def _base_url(args: argparse.Namespace) -> str:
    if args.url:
        url = str(args.url).rstrip("/")
        return url if "://" in url else f"http://{url}"  # "127.0.0.1:8181" as typed
    if args.config:
        from gateway.config import load_config

        http = load_config(args.config).http
        host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
        return f"http://{host}:{http.port}"
    return DEFAULT_URL


def run(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError

    try:
        base = _base_url(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    url = f"{base}/status"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        print(f"metergw status: {url} answered HTTP {exc.code}", file=sys.stderr)
        return EXIT_NO_ANSWER
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(
            f"metergw status: no answer from {url} ({reason}); is the daemon running "
            f"(systemctl status metergw) and is [http] enabled on that address?",
            file=sys.stderr,
        )
        return EXIT_NO_ANSWER
    try:
        doc = json.loads(body)
    except ValueError:
        print(f"metergw status: {url} did not answer with JSON", file=sys.stderr)
        return EXIT_NO_ANSWER
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    from gateway.status.render import status_view

    view = status_view(doc)
    _console(view).print(view)
    return 0


def _console(view: RenderableType) -> Console:
    """A terminal's own width; through a pipe or into a file, as wide as the tables
    need (never wrapped at 80 columns), unless ``COLUMNS`` says otherwise."""
    from rich.console import Console

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    wide = Console(width=_UNLIMITED, color_system=None)
    return Console(width=max(80, wide.measure(view).maximum))
