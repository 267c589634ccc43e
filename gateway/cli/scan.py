"""``metergw scan``: find the meters on a line and print a config snippet for them.

DL/T 645 without ``--addresses``: a wildcard read-address (works when one
meter is connected). With ``--addresses``: each address or range is probed.
Modbus: each unit id of ``--units`` is probed. A meter that answers with an
error reply is present too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from gateway.cli.read import UsageError, add_link_arguments, dlt645_session, link_of, modbus_session

HELP = "find DL/T 645 or Modbus meters on a line and print a [[buses]] config snippet"

_MAX_PROBES = 10_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_link_arguments(p, timeout=0.3)
    p.add_argument(
        "--addresses",
        help="DL/T 645 addresses or ranges, e.g. 000000000001-000000000030,000000000042",
    )
    p.add_argument("--units", default="1-247", help="Modbus unit ids, e.g. 1-10,17")
    p.add_argument("--profile", help="Modbus: profile to probe with and to put in the snippet")
    p.add_argument("--name", help="bus name in the snippet (default: from the port)")


def parse_ranges(text: str, *, width: int | None, low: int, high: int) -> list[int]:
    """``1-3,7`` -> [1, 2, 3, 7]; ``width`` requires zero-padded numbers of that length."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        first, _, last = part.partition("-")
        last = last or first
        for bound in (first, last):
            if not bound.isdigit() or (width is not None and len(bound) != width):
                what = f"{width}-digit addresses" if width else "numbers"
                raise UsageError(f"{part!r}: expected {what} or ranges of them")
        a, b = int(first), int(last)
        if not low <= a <= b <= high:
            raise UsageError(f"{part!r}: range must go up, within {low}..{high}")
        out.extend(range(a, b + 1))
        if len(out) > _MAX_PROBES:
            raise UsageError(f"more than {_MAX_PROBES} probes; narrow the ranges")
    return list(dict.fromkeys(out))


async def _scan_dlt645(args: argparse.Namespace, tick: Callable[[], None]) -> list[str]:
    from drivers.errors import DriverError, LinkError
    from protocols.dlt645 import Variant

    session = dlt645_session(args)
    probe_di = 0x9010 if session.variant == Variant.V1997 else 0x00010000
    found: list[str] = []
    try:
        if not args.addresses:
            if session.variant == Variant.V1997:
                raise UsageError("DL/T 645-1997 has no read-address: give --addresses")
            try:
                found.append(await session.read_address())
            except LinkError:
                raise
            except DriverError:
                pass  # nobody answered, or several at once (a collision)
            tick()
            return found
        addresses = parse_ranges(args.addresses, width=12, low=0, high=999_999_999_999)

        async def probe(address: str) -> None:
            await session.read(address, probe_di)

        found += await _probe_each([f"{n:012d}" for n in addresses], probe, tick)
    finally:
        await session.transport.close()
    return found


async def _scan_modbus(args: argparse.Namespace, tick: Callable[[], None]) -> list[str]:
    from drivers.modbus import ReadBlock
    from protocols.modbus_profile import resolve_profile

    block = ReadBlock(3, 0, 1, ())
    if args.profile:
        first = resolve_profile(args.profile, args.profile_dir).registers[0]
        block = ReadBlock(first.function, first.address, first.count, ())
    session = modbus_session(args)
    units = parse_ranges(args.units, width=None, low=1, high=247)

    async def probe(unit: str) -> None:
        await session.read_block(int(unit), block)

    try:
        return await _probe_each([str(u) for u in units], probe, tick)
    finally:
        await session.close()


async def _probe_each(
    targets: Sequence[str], probe: Callable[[str], Awaitable[None]], tick: Callable[[], None]
) -> list[str]:
    """The targets that answered ``probe``: with data or with an error reply (a device
    is there). No answer or garbage means nobody; a link error ends the scan."""
    from drivers.errors import DeviceError, DriverError, LinkError

    found: list[str] = []
    for target in targets:
        try:
            await probe(target)
            found.append(target)
        except DeviceError:
            found.append(target)
        except LinkError:
            raise
        except DriverError:
            pass
        tick()
    return found


def _probes(args: argparse.Namespace) -> int:
    if args.protocol.startswith("modbus"):
        return len(parse_ranges(args.units, width=None, low=1, high=247))
    if args.addresses:
        return len(parse_ranges(args.addresses, width=12, low=0, high=999_999_999_999))
    return 1


def snippet(args: argparse.Namespace, found: Sequence[str]) -> str:
    """A ``[[buses]]`` + ``[[buses.meters]]`` TOML snippet for the meters found."""
    modbus = args.protocol.startswith("modbus")
    name = args.name or (Path(args.serial).name if args.serial else "tcp-" + args.tcp.split(":")[0])
    lines = ["[[buses]]", f'name = "{name}"', f'protocol = "{args.protocol}"']
    if args.serial:
        baud = args.baud or (9600 if modbus else 2400)
        parity = args.parity or ("N" if modbus else "E")
        lines.append(f'serial = {{ port = "{args.serial}", baud = {baud}, parity = "{parity}" }}')
    else:
        host, _, port = args.tcp.rpartition(":")
        lines.append(f'tcp = {{ host = "{host}", port = {port} }}')
    lines.append(f"timeout = {max(args.timeout, 0.2):g}")
    for item in found:
        lines += ["", "[[buses.meters]]"]
        if modbus:
            lines.append(f"unit = {item}")
            lines.append(f'profile = "{args.profile or "sdm630"}"')
        else:
            lines.append(f'address = "{item}"')
        lines.append("poll = []  # names of [poll_groups.*]")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from drivers.errors import DriverError
    from protocols.modbus_profile import ProfileError

    modbus = args.protocol.startswith("modbus")
    try:
        total = _probes(args)
    except UsageError as exc:
        print(f"metergw scan: {exc}", file=sys.stderr)
        return 2

    async def scan(tick: Callable[[], None]) -> list[str]:
        return await (_scan_modbus(args, tick) if modbus else _scan_dlt645(args, tick))

    try:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            with Progress(console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task(f"scanning {link_of(args)}", total=total)
                found = asyncio.run(scan(lambda: bar.advance(task)))
        else:
            found = asyncio.run(scan(lambda: None))
    except (UsageError, ProfileError) as exc:
        print(f"metergw scan: {exc}", file=sys.stderr)
        return 2
    except DriverError as exc:
        print(f"metergw scan: {exc}", file=sys.stderr)
        return 1
    what = "unit(s)" if modbus else "meter(s)"
    print(f"# {len(found)} {what} found on {link_of(args)}: {', '.join(found) or 'none'}")
    if not found:
        if not modbus and not args.addresses:
            print(
                "# read-address needs exactly one meter on the line; with several, give --addresses"
            )
        return 1
    print(snippet(args, found))
    return 0
