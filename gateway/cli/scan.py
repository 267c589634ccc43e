"""``metergw scan``: find the meters on a line and print a config snippet for them.

How a line is searched is the protocol's (its plugin's ``scan`` hook: DL/T
645 read-address or ``--addresses``, Modbus ``--units``; see
:mod:`gateway.southbound`). A meter that answers with an error reply is
present too. Then each meter found is asked which quantities it has, and the
snippet polls those (see :mod:`gateway.cli.snippet`). Progress goes to
stderr: one line that updates on a terminal, a line per tenth and per meter
found otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

from gateway.cli.read import UsageError, add_link_arguments, link_of
from gateway.cli.snippet import Found, snippet

HELP = "find DL/T 645 or Modbus meters on a line and print a config snippet that polls them"

_MAX_PROBES = 10_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    from gateway.southbound.registry import plugins

    add_link_arguments(p, timeout=0.3)
    p.add_argument("--name", help="bus name in the snippet (default: from the port)")
    for plugin in plugins():
        plugin.add_scan_arguments(p)


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


async def probe_each(
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


def run(args: argparse.Namespace) -> int:
    from drivers.errors import DriverError
    from gateway.cli.read import describe_error
    from gateway.southbound.registry import plugin_for

    plugin = plugin_for(args.protocol)
    try:
        total = plugin.scan_probes(args)
    except UsageError as exc:
        print(f"metergw scan: {exc}", file=sys.stderr)
        return 2
    progress = Progress(total, link_of(args), plugin.noun)

    async def scan() -> list[Found]:
        return await plugin.scan(args, progress)

    try:
        found = asyncio.run(scan())
    except UsageError as exc:
        progress.close()
        print(f"metergw scan: {exc}", file=sys.stderr)
        return 2
    except DriverError as exc:
        progress.close()
        print(f"metergw scan: {describe_error(exc, '', args)}", file=sys.stderr)
        return 1
    progress.close()
    names = ", ".join(f.ident for f in found) or "none"
    print(f"# {len(found)} {plugin.noun}(s) found on {link_of(args)}: {names}")
    if not found:
        hint = plugin.scan_hint(args)
        if hint:
            print(hint)
        return 1
    print(snippet(args, found))
    return 0
