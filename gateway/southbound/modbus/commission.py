"""``metergw read`` and ``metergw scan`` on a Modbus line (the plugin's CLI hooks).

read: ``--unit`` and ``--profile`` (every quantity of the profile, or
``--key``). scan: each unit id of ``--units`` is probed (with the first
register of ``--profile``, or holding register 0); a device that answers
with an error reply is present too. A device found reads its profile's
registers (all in merged reads, or, if it refuses one, each alone).
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.read import Row, UsageError, _bounded, parse_tcp
from gateway.cli.scan import Progress, parse_ranges, probe_each
from gateway.cli.snippet import Found


def add_read_arguments(p: argparse.ArgumentParser) -> None:
    """``--unit``, ``--profile`` and ``--key``."""
    p.add_argument("--unit", type=_bounded(0, 247, "a Modbus unit id"), help="Modbus unit id")
    p.add_argument("--profile", help="Modbus profile name or path")
    p.add_argument("--key", action="append", default=[], help="Modbus: only these quantity keys")


def add_scan_arguments(p: argparse.ArgumentParser) -> None:
    """``--units`` and ``--profile``."""
    p.add_argument("--units", default="1-247", help="Modbus unit ids, e.g. 1-10,17")
    p.add_argument("--profile", help="Modbus: profile to probe with and to put in the snippet")


async def read_meter(args: argparse.Namespace) -> list[Row]:
    """``metergw read`` of one Modbus device; a profile that cannot be used is a
    :class:`UsageError`, as a wrong argument is."""
    from protocols.modbus_profile import ProfileError

    try:
        return await _read_modbus(args)
    except ProfileError as exc:
        raise UsageError(str(exc)) from exc


async def scan_line(args: argparse.Namespace, progress: Progress) -> list[Found]:
    """``metergw scan`` of a Modbus line (a profile that cannot be used: :class:`UsageError`)."""
    from protocols.modbus_profile import ProfileError

    try:
        return await _scan_modbus(args, progress)
    except ProfileError as exc:
        raise UsageError(str(exc)) from exc


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


async def _scan_modbus(args: argparse.Namespace, progress: Progress) -> list[Found]:
    from drivers.modbus import ReadBlock
    from protocols.modbus_profile import resolve_profile

    block = ReadBlock(3, 0, 1, ())
    profile = None
    if args.profile:
        profile = resolve_profile(args.profile, args.profile_dir)
        first = profile.registers[0]
        block = ReadBlock(first.function, first.address, first.count, ())
    session = modbus_session(args)
    units = parse_ranges(args.units, width=None, low=1, high=247)

    async def probe(unit: str) -> None:
        await session.read_block(int(unit), block)

    try:
        found = []
        for unit in await probe_each([str(u) for u in units], probe, progress):
            if profile is None:
                found.append(Found(unit, None))
                continue
            progress.note(f"reading unit {unit} with profile {profile.name!r}")
            found.append(Found(unit, await modbus_quantities(session, int(unit), profile)))
        return found
    finally:
        await session.close()


async def modbus_quantities(session: Any, unit: int, profile: Any) -> tuple[str, ...]:
    """The keys of ``profile`` the Modbus device ``unit`` answers (all in merged reads,
    or, if it refuses one, each register alone)."""
    from drivers.errors import DriverError, LinkError
    from drivers.modbus import RegisterSpan

    spans = [RegisterSpan(s.key, s.function, s.address, s.count) for s in profile.registers]
    try:
        await session.read_spans(unit, spans)
        return tuple(s.key for s in spans)
    except LinkError:
        raise
    except DriverError:
        pass
    got = []
    for span in spans:
        try:
            await session.read_spans(unit, [span])
        except LinkError:
            raise
        except DriverError:
            continue
        got.append(span.key)
    return tuple(got)
