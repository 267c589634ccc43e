"""``metergw read`` and ``metergw scan`` on a DL/T 645 line (the plugin's CLI hooks).

read: ``--addr`` and one or more ``--di`` (a hex data identifier or a
quantity key); the load profile (``06000001``) needs ``--from`` (meter time)
and ``--count`` (records, 1-99). scan: without ``--addresses`` a wildcard
read-address, which only one meter on the line can answer (several answer at
once and collide); with ``--addresses`` each candidate address is read (its
energy register), so any number of meters is found. Each meter found is asked
for the quantities of the snippet's templates, one block where the variant
has one, each member alone if the meter refuses the block.
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.read import Row, UsageError, parse_tcp
from gateway.cli.scan import Progress, parse_ranges, probe_each
from gateway.cli.snippet import GROUPS, Found


def add_read_arguments(p: argparse.ArgumentParser) -> None:
    """``--addr``, ``--di``, and ``--from``/``--count`` for the load profile."""
    p.add_argument("--addr", help="DL/T 645 meter address (12 digits)")
    p.add_argument(
        "--di", action="append", default=[], help="data identifier (hex) or quantity key"
    )
    p.add_argument(
        "--from",
        dest="start",
        metavar="ISO8601",
        help="load profile (06000001): first record time, meter-local (e.g. 2026-11-23T10:00)",
    )
    p.add_argument(
        "--count", type=int, default=1, help="load profile: how many records (1-99, default 1)"
    )


def add_scan_arguments(p: argparse.ArgumentParser) -> None:
    """``--addresses``: the candidates, when several meters share the line."""
    p.add_argument(
        "--addresses",
        help="DL/T 645 addresses or ranges to try, e.g. 000000000001-000000000030,000000000042 "
        "(needed when several meters share the line)",
    )


async def read_meter(args: argparse.Namespace) -> list[Row]:
    """``metergw read`` of one DL/T 645 meter."""
    return await _read_dlt645(args)


async def scan_line(args: argparse.Namespace, progress: Progress) -> list[Found]:
    """``metergw scan`` of a DL/T 645 line."""
    return await _scan_dlt645(args, progress)


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


async def _scan_dlt645(args: argparse.Namespace, progress: Progress) -> list[Found]:
    from drivers.errors import DriverError, LinkError
    from protocols.dlt645 import Variant

    session = dlt645_session(args)
    probe_di = 0x9010 if session.variant == Variant.V1997 else 0x00010000
    try:
        addresses: list[str] = []
        if not args.addresses:
            if session.variant == Variant.V1997:
                raise UsageError("DL/T 645-1997 has no read-address: give --addresses")
            try:
                addresses.append(await session.read_address())
            except LinkError:
                raise
            except DriverError:
                pass  # nobody answered, or several at once (a collision)
            progress.advance(addresses[0] if addresses else None)
        else:
            candidates = parse_ranges(args.addresses, width=12, low=0, high=999_999_999_999)

            async def probe(address: str) -> None:
                await session.read(address, probe_di)

            addresses = await probe_each([f"{n:012d}" for n in candidates], probe, progress)
        found = []
        for address in addresses:
            progress.note(f"reading what meter {address} has")
            found.append(Found(address, await dlt645_quantities(session, address)))
        return found
    finally:
        await session.transport.close()


async def dlt645_quantities(session: Any, address: str) -> tuple[str, ...]:
    """The quantities of :data:`GROUPS` the meter at ``address`` answers."""
    from drivers.dlt645.plan import UnmappedKeys, plan_dis
    from drivers.errors import DriverError, LinkError
    from protocols.dlt645 import REGISTRY

    variant = session.variant
    single: dict[str, int] = {}
    for _, template in GROUPS.values():
        for key in template:
            try:
                single[key] = plan_dis([key], variant)[0]
            except UnmappedKeys:
                continue  # e.g. no frequency in DL/T 645-1997

    async def answered(di: int) -> set[str]:
        try:
            values = await session.read_values(address, di)
        except LinkError:
            raise
        except DriverError:
            return set()
        return {v.key for v in values if v.key in single}

    got: set[str] = set()
    for di in plan_dis(single, variant):
        keys = await answered(di)
        block = REGISTRY[(variant, di)]
        if not keys and block.kind == "block":
            # A meter may refuse a block (a single-phase meter asked for three
            # voltages) and still answer its members one by one.
            for member in single.values():
                if member in block.members:
                    keys |= await answered(member)
        got |= keys
    return tuple(k for k in single if k in got)
