"""``metergw scan``: find the meters on a line and print a config snippet for them.

DL/T 645 without ``--addresses``: a wildcard read-address, which only one
meter on the line can answer (several answer at once and collide). With
``--addresses``: each candidate address is read (its energy register), so any
number of meters is found. Modbus: each unit id of ``--units`` is probed. A
meter that answers with an error reply is present too. Then each meter found
is asked which quantities it has, and the snippet polls those (see
:mod:`gateway.cli.snippet`). Progress goes to stderr: one line that updates on
a terminal, a line per tenth and per meter found otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

from gateway.cli.read import UsageError, add_link_arguments, dlt645_session, link_of, modbus_session
from gateway.cli.snippet import Found, dlt645_quantities, modbus_quantities, snippet

HELP = "find DL/T 645 or Modbus meters on a line and print a config snippet that polls them"

_MAX_PROBES = 10_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_link_arguments(p, timeout=0.3)
    p.add_argument(
        "--addresses",
        help="DL/T 645 addresses or ranges to try, e.g. 000000000001-000000000030,000000000042 "
        "(needed when several meters share the line)",
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


class Progress:
    """How far a scan is, on stderr: one line rewritten in place on a terminal;
    elsewhere (a log, CI) a plain line per tenth of the way and per meter found."""

    def __init__(self, total: int, what: str, noun: str, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.total = max(total, 1)
        self.what = what
        self.noun = noun
        self.done = 0
        self.found = 0
        self._tenth = 0

    def line(self) -> str:
        """``scanning 127.0.0.1:9000: 40/200 (20%), 2 found``."""
        percent = 100 * self.done // self.total
        return f"scanning {self.what}: {self.done}/{self.total} ({percent}%), {self.found} found"

    def advance(self, found: str | None = None) -> None:
        """One probe done; ``found`` names what answered it."""
        self.done += 1
        if found is not None:
            self.found += 1
            if not self.tty:
                self._write(f"found {self.noun} {found} on {self.what}\n")
        if self.tty:
            self._write(f"\r\x1b[K{self.line()}")
            return
        tenth = 10 * self.done // self.total
        if tenth > self._tenth:
            self._tenth = tenth
            self._write(self.line() + "\n")

    def note(self, text: str) -> None:
        """A phase of the scan (reading what each meter has)."""
        self._write(f"\r\x1b[K{text}" if self.tty else text + "\n")

    def close(self) -> None:
        """Clear the terminal line, so that only the result stays."""
        if self.tty:
            self._write("\r\x1b[K")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


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

            addresses = await _probe_each([f"{n:012d}" for n in candidates], probe, progress)
        found = []
        for address in addresses:
            progress.note(f"reading what meter {address} has")
            found.append(Found(address, await dlt645_quantities(session, address)))
        return found
    finally:
        await session.transport.close()


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
        for unit in await _probe_each([str(u) for u in units], probe, progress):
            if profile is None:
                found.append(Found(unit, None))
                continue
            progress.note(f"reading unit {unit} with profile {profile.name!r}")
            found.append(Found(unit, await modbus_quantities(session, int(unit), profile)))
        return found
    finally:
        await session.close()


async def _probe_each(
    targets: Sequence[str], probe: Callable[[str], Awaitable[None]], progress: Progress
) -> list[str]:
    """The targets that answered ``probe``: with data or with an error reply (a device
    is there). No answer or garbage means nobody; a link error ends the scan."""
    from drivers.errors import DeviceError, DriverError, LinkError

    found: list[str] = []
    for target in targets:
        answered = True
        try:
            await probe(target)
        except DeviceError:
            pass
        except LinkError:
            raise
        except DriverError:
            answered = False
        if answered:
            found.append(target)
        progress.advance(target if answered else None)
    return found


def _probes(args: argparse.Namespace) -> int:
    if args.protocol.startswith("modbus"):
        return len(parse_ranges(args.units, width=None, low=1, high=247))
    if args.addresses:
        return len(parse_ranges(args.addresses, width=12, low=0, high=999_999_999_999))
    return 1


def run(args: argparse.Namespace) -> int:
    from drivers.errors import DriverError
    from gateway.cli.read import describe_error
    from protocols.modbus_profile import ProfileError

    modbus = args.protocol.startswith("modbus")
    try:
        total = _probes(args)
    except UsageError as exc:
        print(f"metergw scan: {exc}", file=sys.stderr)
        return 2
    progress = Progress(total, link_of(args), "unit" if modbus else "meter")

    async def scan() -> list[Found]:
        return await (_scan_modbus(args, progress) if modbus else _scan_dlt645(args, progress))

    try:
        found = asyncio.run(scan())
    except (UsageError, ProfileError) as exc:
        progress.close()
        print(f"metergw scan: {exc}", file=sys.stderr)
        return 2
    except DriverError as exc:
        progress.close()
        print(f"metergw scan: {describe_error(exc, '', args)}", file=sys.stderr)
        return 1
    progress.close()
    what = "unit(s)" if modbus else "meter(s)"
    names = ", ".join(f.ident for f in found) or "none"
    print(f"# {len(found)} {what} found on {link_of(args)}: {names}")
    if not found:
        if not modbus and not args.addresses:
            print(
                "# no answer to read-address: either no meter is there, or several are and "
                "they answered at once; give --addresses (the nameplate addresses or ranges)"
            )
        return 1
    print(snippet(args, found))
    return 0
