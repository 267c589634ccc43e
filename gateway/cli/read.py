"""``metergw read``: one-shot read of one meter, for commissioning.

DL/T 645: ``--addr`` and one or more ``--di`` (a hex data identifier or a
quantity key); the load profile (``06000001``) needs ``--from`` (meter time)
and ``--count`` (records, 1-99). Modbus: ``--unit`` and ``--profile`` (every quantity of the
profile, or ``--key``). Prints a table (key, value, unit) or JSON; exits 1
with a message naming the meter and the port when the meter does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HELP = "read a meter once (DL/T 645 data identifiers or a Modbus profile) and print the values"

PROTOCOLS = ("dlt645-2007", "dlt645-1997", "modbus-rtu", "modbus-tcp")
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
    p.add_argument("--protocol", choices=PROTOCOLS, default="dlt645-2007")
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
    add_link_arguments(p, timeout=1.0)
    p.add_argument("--addr", help="DL/T 645 meter address (12 digits)")
    p.add_argument(
        "--di", action="append", default=[], help="data identifier (hex) or quantity key"
    )
    p.add_argument("--unit", type=_bounded(0, 247, "a Modbus unit id"), help="Modbus unit id")
    p.add_argument("--profile", help="Modbus profile name or path")
    p.add_argument("--key", action="append", default=[], help="Modbus: only these quantity keys")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--from",
        dest="start",
        metavar="ISO8601",
        help="load profile (06000001): first record time, meter-local (e.g. 2026-11-23T10:00)",
    )
    p.add_argument(
        "--count", type=int, default=1, help="load profile: how many records (1-99, default 1)"
    )


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


def dlt645_session(args: argparse.Namespace) -> Any:
    """A DL/T 645 session over the serial port or TCP endpoint of the arguments."""
    from drivers.dlt645 import Dlt645Session
    from drivers.transport import SerialTransport, StreamTransport, TcpTransport
    from protocols.dlt645 import Variant

    transport: StreamTransport
    if args.serial:
        transport = SerialTransport(args.serial, baud=args.baud or 2400, parity=args.parity or "E")
    else:
        host, port = parse_tcp(args.tcp)
        transport = TcpTransport(host, port, connect_timeout=max(args.timeout, 1.0))
    return Dlt645Session(
        transport, Variant(args.protocol), timeout=args.timeout, retries=args.retries
    )


def modbus_session(args: argparse.Namespace) -> Any:
    """A Modbus session (RTU on serial, TCP, or RTU over TCP) for the arguments."""
    import logging

    from drivers.modbus import ModbusSession

    # pymodbus logs every timeout as an error with frame dumps (and debug lines
    # when something set the root logger to debug); our own messages name each
    # failure, so its logging is only noise here.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if args.serial:
        if args.protocol == "modbus-tcp":
            raise UsageError("--protocol modbus-tcp needs --tcp")
        return ModbusSession.serial(
            args.serial,
            baud=args.baud or 9600,
            parity=args.parity or "N",
            timeout=args.timeout,
            retries=args.retries,
        )
    host, port = parse_tcp(args.tcp)
    return ModbusSession.tcp(
        host,
        port,
        rtu_framing=args.protocol == "modbus-rtu",
        timeout=args.timeout,
        retries=args.retries,
    )


async def _read_dlt645(args: argparse.Namespace) -> list[Row]:
    from drivers.dlt645.plan import plan_dis
    from protocols.dlt645 import Variant, decode_address, format_di, lookup
    from protocols.quantities import QUANTITIES

    if not args.addr or len(args.addr) != 12 or not args.addr.isdigit():
        raise UsageError("--addr: a DL/T 645 meter address is 12 decimal digits")
    if not args.di:
        raise UsageError("--di: name at least one data identifier or quantity key")
    variant = Variant(args.protocol)
    dis: list[int] = []
    for text in args.di:
        if text in QUANTITIES:
            dis.extend(plan_dis([text], variant))
            continue
        try:
            dis.append(int(text, 16))
        except ValueError:
            raise UsageError(f"--di {text!r}: not a hex data identifier or quantity key") from None
    for di in dis:
        try:
            lookup(di, variant)
        except KeyError as exc:
            raise UsageError(f"--di: {exc.args[0]}") from None
    session = dlt645_session(args)
    rows: list[Row] = []
    try:
        for di in dis:
            item = lookup(di, variant)
            name = format_di(di, variant)
            if item.kind in ("date", "time", "datetime", "freeze_time"):
                when = await session.read_datetime(args.addr, di)
                text = (
                    when.date()
                    if item.kind == "date"
                    else when.time()
                    if item.kind == "time"
                    else when
                )
                rows.append(Row(name, item.kind, text.isoformat(), ""))
            elif item.kind == "load_profile":
                rows.extend(await _read_load_profile(session, args, di, name))
            elif item.kind == "address":
                rows.append(
                    Row(name, "address", decode_address(await session.read(args.addr, di)), "")
                )
            else:
                for v in await session.read_values(args.addr, di):
                    rows.append(Row(format_di(v.di, variant), v.key, str(v.value), v.unit))
    finally:
        await session.transport.close()
    return rows


async def _read_load_profile(
    session: Any, args: argparse.Namespace, di: int, name: str
) -> list[Row]:
    """Load-profile records from ``--from`` (meter time), ``--count`` of them."""
    import datetime as dt

    from protocols.dlt645 import LOAD_FIELDS, decode_load_profile, load_profile_request_extra
    from protocols.dlt645.records import MAX_LOAD_RECORDS

    if not args.start:
        raise UsageError(f"--di {name} is the load profile: give --from (meter time) and --count")
    if not 1 <= args.count <= MAX_LOAD_RECORDS:
        raise UsageError(f"--count {args.count}: a load-profile read asks for 1-{MAX_LOAD_RECORDS}")
    try:
        start = dt.datetime.fromisoformat(args.start).replace(tzinfo=None)
    except ValueError:
        raise UsageError(f"--from {args.start!r}: not an ISO 8601 time") from None
    extra = load_profile_request_extra(args.count, start)
    records = decode_load_profile(await session.read(args.addr, di, extra=extra, long_reply=True))
    return [
        Row(
            f"{name} {rec.start.isoformat(timespec='minutes')}",
            key,
            str(value),
            LOAD_FIELDS[key].unit,
        )
        for rec in records
        for key, value in rec.values.items()
    ]


async def _read_modbus(args: argparse.Namespace) -> list[Row]:
    from drivers.modbus import RegisterSpan
    from protocols.modbus_profile import decode_value, resolve_profile

    if args.unit is None or not args.profile:
        raise UsageError("Modbus reads need --unit and --profile")
    profile = resolve_profile(args.profile, args.profile_dir)
    specs = [profile.by_key(k) for k in args.key] if args.key else list(profile.registers)
    session = modbus_session(args)
    rows: list[Row] = []
    try:
        spans = [RegisterSpan(s.key, s.function, s.address, s.count) for s in specs]
        registers = await session.read_spans(args.unit, spans)
    finally:
        await session.close()
    for s in specs:
        value = decode_value(s, registers[s.key])
        rows.append(Row(f"{s.function:02d}:{s.address:#06x}", s.key, str(value), s.unit))
    return rows


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
    connect_timeout = args.timeout if args.protocol.startswith("modbus") else max(args.timeout, 1)
    if isinstance(cause, TimeoutError):
        return f"timed out after {connect_timeout:g} s"
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host name ({cause.strerror})"
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno).lower()
    return str(cause) or type(cause).__name__


def run(args: argparse.Namespace) -> int:
    from drivers.errors import DriverError
    from protocols.modbus_profile import ProfileError

    modbus = args.protocol.startswith("modbus")
    meter = f"unit {args.unit}" if modbus else f"meter {args.addr}"
    try:
        rows = asyncio.run(_read_modbus(args) if modbus else _read_dlt645(args))
    except (UsageError, ProfileError) as exc:
        print(f"metergw read: {exc}", file=sys.stderr)
        return 2
    except DriverError as exc:
        print(f"metergw read: {describe_error(exc, meter, args)}", file=sys.stderr)
        return 1
    print_rows(rows, args, args.addr if not modbus else str(args.unit))
    return 0
