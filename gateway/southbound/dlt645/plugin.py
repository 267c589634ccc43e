"""The DL/T 645 plugin: its hooks, each a few lines over the modules that do the work.

Drivers and protocol tables are imported when a hook runs, so that importing
the config models loads no driver.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.checks import Finding
from gateway.config.southbound import BusConfig, MeterConfig, PollGroupConfig, meter_keys
from gateway.southbound.dlt645.config import Dlt645Bus
from gateway.southbound.reader import MeterReader
from gateway.southbound.registry import ProtocolPlugin

if TYPE_CHECKING:
    from gateway.cli.read import Row
    from gateway.cli.scan import Progress
    from gateway.cli.snippet import Found


class Dlt645Plugin(ProtocolPlugin):
    """DL/T 645-2007 and -1997: the edition is the ``protocol`` name (its ``Variant``)."""

    names = ("dlt645-2007", "dlt645-1997")
    bus_model = Dlt645Bus
    noun = "meter"

    def open_reader(
        self,
        bus: BusConfig,
        *,
        profile_dirs: Sequence[Path] = (),
        on_discard: Callable[[str], None] | None = None,
    ) -> MeterReader:
        from drivers.dlt645 import Dlt645Session
        from gateway.scheduler.links import build_transport
        from gateway.southbound.dlt645.reader import Dlt645Reader
        from protocols.dlt645 import Variant

        session = Dlt645Session(
            build_transport(bus),
            Variant(bus.protocol),
            timeout=bus.timeout,
            retries=bus.retries,
            on_discard=on_discard,
        )
        serial = bus.serial
        # The broadcast time is timed to the line: 11 bits a character (8E1), 10 for 8N1.
        bits = 11 if serial is None or serial.parity != "N" else 10
        return Dlt645Reader(session, char_seconds=bits / serial.baud if serial else 0.0)

    def check(
        self, bus: BusConfig, groups: Mapping[str, PollGroupConfig], profile_dirs: Sequence[Path]
    ) -> list[Finding]:
        """Each meter's quantities must map to data identifiers of the bus's edition."""
        from drivers.dlt645.plan import UnmappedKeys, plan_dis
        from protocols.dlt645 import Variant

        out: list[Finding] = []
        for m, meter in enumerate(bus.meters):
            try:
                plan_dis(meter_keys(meter, groups), Variant(bus.protocol))
            except UnmappedKeys as exc:
                out.append((f"meters[{m}].poll", str(exc)))
        return out

    def poll_seconds(
        self, bus: BusConfig, meter: MeterConfig, keys: Sequence[str], profile_dirs: Sequence[Path]
    ) -> float | None:
        """One transaction per data identifier, each bringing its share of the values."""
        from drivers.dlt645.plan import UnmappedKeys, plan_dis
        from gateway.southbound.dlt645.line import transaction_seconds
        from protocols.dlt645 import Variant

        try:
            dis = len(plan_dis(keys, Variant(bus.protocol)))
        except (UnmappedKeys, ValueError):
            return None
        return dis * transaction_seconds(bus, values=max(1, len(keys) // dis))

    # metergw read / scan ---------------------------------------------------------

    def add_read_arguments(self, p: argparse.ArgumentParser) -> None:
        from gateway.southbound.dlt645 import commission

        commission.add_read_arguments(p)

    def read_target(self, args: argparse.Namespace) -> str:
        return f"meter {args.addr}"

    async def read(self, args: argparse.Namespace) -> list[Row]:
        from gateway.southbound.dlt645.commission import read_meter

        return await read_meter(args)

    def add_scan_arguments(self, p: argparse.ArgumentParser) -> None:
        from gateway.southbound.dlt645 import commission

        commission.add_scan_arguments(p)

    def scan_probes(self, args: argparse.Namespace) -> int:
        from gateway.cli.scan import parse_ranges

        if args.addresses:
            return len(parse_ranges(args.addresses, width=12, low=0, high=999_999_999_999))
        return 1

    async def scan(self, args: argparse.Namespace, progress: Progress) -> list[Found]:
        from gateway.southbound.dlt645.commission import scan_line

        return await scan_line(args, progress)

    def scan_hint(self, args: argparse.Namespace) -> str | None:
        if args.addresses:
            return None
        return (
            "# no answer to read-address: either no meter is there, or several are and "
            "they answered at once; give --addresses (the nameplate addresses or ranges)"
        )

    def snippet_meter(self, args: argparse.Namespace, found: Found) -> list[str]:
        return [f'address = "{found.ident}"']

    def connect_timeout(self, args: argparse.Namespace) -> float:
        return float(max(args.timeout, 1))  # as commission.session opens TCP
