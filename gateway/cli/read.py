"""``metergw read``: one-shot read of one meter, for commissioning.

The link options are shared; what to read is the protocol's (its plugin's
``read`` hook: DL/T 645 ``--addr`` and ``--di``, Modbus ``--unit`` and
``--profile``; see :mod:`gateway.southbound`). Prints a table (key, value,
unit) or JSON; exits 1 with a message naming the meter and the port when the
meter does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HELP = "read a meter once (DL/T 645 data identifiers or a Modbus profile) and print the values"

_MAX_SECONDS = 3600.0


class UsageError(Exception):
    """Arguments that do not fit together."""


def seconds(text: str) -> float:
    """argparse type: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= _MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text}: must be above 0 s (at most {_MAX_SECONDS:g} s)")
    return value


def _bounded(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value}: {what} must be {low}..{high}")
        return value

    return parse


def add_link_arguments(p: argparse.ArgumentParser, *, timeout: float) -> None:
    """The link options ``read`` and ``scan`` share; nonsense (a timeout of -1, a baud
    rate of 0) is refused by argparse with exit status 2."""
    link = p.add_mutually_exclusive_group(required=True)
    link.add_argument("--serial", metavar="DEV", help="serial port (e.g. /dev/ttyUSB0)")
    link.add_argument("--tcp", metavar="HOST:PORT", help="TCP endpoint (DTU or Modbus TCP)")
    from gateway.southbound.registry import protocol_names

    names = protocol_names()
    p.add_argument("--protocol", choices=names, default=names[0], help=f"({names[0]})")
    p.add_argument(
        "--baud",
        type=_bounded(50, 4_000_000, "the baud rate"),
        help="baud rate (2400 for DL/T 645, 9600 for Modbus)",
    )
    p.add_argument(
        "--parity", choices=("N", "E", "O"), help="parity (E for DL/T 645, N for Modbus)"
    )
    p.add_argument(
        "--timeout", type=seconds, default=timeout, help=f"reply timeout in seconds ({timeout:g})"
    )
    p.add_argument(
        "--retries", type=_bounded(0, 10, "retries"), default=0, help="retries after a timeout"
    )
    p.add_argument("--profile-dir", action="append", default=[], type=Path, help="profile folder")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from gateway.southbound.registry import plugins

    add_link_arguments(p, timeout=1.0)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for plugin in plugins():
        plugin.add_read_arguments(p)


@dataclass(frozen=True, slots=True)
class Row:
    """One printed value."""

    item: str
    key: str
    value: str
    unit: str


def parse_tcp(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); :class:`UsageError` otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--tcp {text!r}: expected HOST:PORT")
    return host, int(port)


def link_of(args: argparse.Namespace) -> str:
    """The port path or ``host:port`` the arguments name."""
    return str(args.serial or args.tcp)


def print_rows(rows: Sequence[Row], args: argparse.Namespace, meter: str) -> None:
    """A table (key, value, unit) or, with ``--json``, one JSON document."""
    if args.json:
        doc = {
            "meter": meter,
            "protocol": args.protocol,
            "link": link_of(args),
            "values": [
                {"item": r.item, "key": r.key, "value": r.value, "unit": r.unit} for r in rows
            ],
        }
        print(json.dumps(doc, indent=2))
        return
    widths = [max([len(h)] + [len(getattr(r, f)) for r in rows]) for h, f in
              (("item", "item"), ("key", "key"), ("value", "value"))]  # fmt: skip
    print(f"{'item':<{widths[0]}}  {'key':<{widths[1]}}  {'value':>{widths[2]}}  unit")
    for r in rows:
        print(f"{r.item:<{widths[0]}}  {r.key:<{widths[1]}}  {r.value:>{widths[2]}}  {r.unit}")


def describe_error(exc: Exception, meter: str, args: argparse.Namespace) -> str:
    """The error's message, naming the meter (if any) and the link once each, and for a link
    that cannot be opened, why (connection refused, timed out, no such device)."""
    from drivers.errors import LinkError

    link = link_of(args)
    who = f"{meter} on {link}" if meter else link
    if isinstance(exc, LinkError) and "cannot" in str(exc):
        return f"{who}: cannot connect: {link_failure(exc.__cause__, args)}"
    text = str(exc)
    name = meter.split(" ", 1)[-1]
    if name in text and link in text:
        return text
    return f"{who}: {text.removeprefix(f'{link}: ')}"


def link_failure(cause: BaseException | None, args: argparse.Namespace) -> str:
    """Why a link did not open, in words: from the driver's cause, or, when the driver
    kept it to itself (pymodbus does), from trying the port or the address again."""
    import os
    import socket

    if cause is None:
        try:
            if args.serial:
                os.close(os.open(args.serial, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
            else:
                socket.create_connection(parse_tcp(args.tcp), timeout=args.timeout).close()
        except OSError as exc:
            cause = exc
        else:
            return "the driver gave up, though the link opens now (try again)"
    from gateway.southbound.registry import plugin_for

    connect_timeout = plugin_for(args.protocol).connect_timeout(args)
    if isinstance(cause, TimeoutError):
        return f"timed out after {connect_timeout:g} s"
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host name ({cause.strerror})"
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno).lower()
    return str(cause) or type(cause).__name__


def run(args: argparse.Namespace) -> int:
    from drivers.errors import DriverError
    from gateway.southbound.registry import plugin_for

    plugin = plugin_for(args.protocol)
    meter = plugin.read_target(args)
    try:
        rows = asyncio.run(plugin.read(args))
    except UsageError as exc:
        print(f"metergw read: {exc}", file=sys.stderr)
        return 2
    except DriverError as exc:
        print(f"metergw read: {describe_error(exc, meter, args)}", file=sys.stderr)
        return 1
    print_rows(rows, args, meter.split(" ", 1)[-1])  # "unit 3" -> "3"
    return 0
