"""The Modbus plugin: its hooks, each a few lines over the modules that do the work.

RTU, TCP and RTU over TCP are one plugin: one meter model (unit, profile),
one reader; the ``protocol`` name and the link choose the framing. Drivers
and profiles are loaded when a hook runs, so that importing the config models
loads no driver.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.checks import Finding
from gateway.config.southbound import BusConfig, MeterConfig, PollGroupConfig, meter_keys
from gateway.config.validation import ValidationOverride
from gateway.southbound.modbus.config import ModbusBus, ModbusMeter
from gateway.southbound.reader import MeterReader
from gateway.southbound.registry import ProtocolPlugin

if TYPE_CHECKING:
    from gateway.cli.read import Row
    from gateway.cli.scan import Progress
    from gateway.cli.snippet import Found


class ModbusPlugin(ProtocolPlugin):
    """Modbus RTU (serial, or RTU framing through a TCP serial server) and Modbus TCP."""

    names = ("modbus-rtu", "modbus-tcp")
    bus_model = ModbusBus
    noun = "unit"
    cli_serial = (9600, "N")

    def open_reader(
        self,
        bus: BusConfig,
        *,
        profile_dirs: Sequence[Path] = (),
        on_discard: Callable[[str], None] | None = None,
    ) -> MeterReader:
        from drivers.modbus import ModbusSession
        from gateway.southbound.modbus.reader import ModbusReader

        assert isinstance(bus, ModbusBus)
        if bus.serial is not None:
            s = bus.serial
            modbus = ModbusSession.serial(
                s.port,
                baud=s.baud,
                parity=s.parity,
                bytesize=s.bytesize,
                stopbits=s.stopbits,
                timeout=bus.timeout,
                retries=bus.retries,
                max_gap=bus.max_gap,
                max_registers=bus.max_registers,
            )
        else:
            assert bus.tcp is not None
            modbus = ModbusSession.tcp(
                bus.tcp.host,
                bus.tcp.port,
                rtu_framing=bus.protocol == "modbus-rtu",
                timeout=bus.timeout,
                retries=bus.retries,
                max_gap=bus.max_gap,
                max_registers=bus.max_registers,
            )
        return ModbusReader(modbus, profile_dirs)

    def check(
        self, bus: BusConfig, groups: Mapping[str, PollGroupConfig], profile_dirs: Sequence[Path]
    ) -> list[Finding]:
        """Each meter's profile must exist, hold valid ``[validation]`` thresholds, and
        have a register for every quantity the meter is polled for."""
        from gateway.config.validation import profile_override
        from protocols.modbus_profile import ProfileError, resolve_profile

        out: list[Finding] = []
        for m, meter in enumerate(bus.meters):
            assert isinstance(meter, ModbusMeter)
            where = f"meters[{m}]"
            try:
                profile = resolve_profile(meter.profile or "", profile_dirs)
            except ProfileError as exc:
                out.append((f"{where}.profile", str(exc)))
                continue
            try:
                profile_override(profile.validation, profile.source)
            except ValueError as exc:
                out.append((f"{where}.profile", str(exc)))
            keys = meter_keys(meter, groups)
            missing = [k for k in dict.fromkeys(keys) if k not in profile.keys]
            if missing:
                out.append(
                    (
                        f"{where}.poll",
                        f"profile {profile.name!r} has no register for {', '.join(missing)}",
                    )
                )
        return out

    def poll_seconds(
        self, bus: BusConfig, meter: MeterConfig, keys: Sequence[str], profile_dirs: Sequence[Path]
    ) -> float | None:
        """One transaction per merged read of the profile's registers for ``keys``."""
        from drivers.modbus.planner import RegisterSpan, plan_reads
        from gateway.southbound.modbus.line import transaction_seconds
        from protocols.modbus_profile import ProfileError, resolve_profile

        assert isinstance(bus, ModbusBus)
        assert isinstance(meter, ModbusMeter)
        try:
            profile = resolve_profile(meter.profile or "", profile_dirs)
            specs = [profile.by_key(k) for k in keys if k in profile.keys]
            spans = [RegisterSpan(s.key, s.function, s.address, s.count) for s in specs]
            blocks = plan_reads(spans, max_gap=bus.max_gap, max_registers=bus.max_registers)
        except (ProfileError, KeyError, ValueError):
            return None
        return sum(transaction_seconds(bus, b.count) for b in blocks)

    def meter_validation(
        self, meter: MeterConfig, profile_dirs: Sequence[Path]
    ) -> ValidationOverride | None:
        """The profile's ``[validation]`` table (a profile that cannot be read is
        reported by :meth:`check`)."""
        from gateway.config.validation import profile_override
        from protocols.modbus_profile import ProfileError, resolve_profile

        assert isinstance(meter, ModbusMeter)
        try:
            profile = resolve_profile(meter.profile, profile_dirs)
            if profile.validation:
                return profile_override(profile.validation, profile.source)
        except (ProfileError, ValueError):
            pass
        return None

    # metergw read / scan ---------------------------------------------------------

    def add_read_arguments(self, p: argparse.ArgumentParser) -> None:
        from gateway.southbound.modbus import commission

        commission.add_read_arguments(p)

    def read_target(self, args: argparse.Namespace) -> str:
        return f"unit {args.unit}"

    async def read(self, args: argparse.Namespace) -> list[Row]:
        from gateway.southbound.modbus.commission import read_meter

        return await read_meter(args)

    def add_scan_arguments(self, p: argparse.ArgumentParser) -> None:
        from gateway.southbound.modbus import commission

        commission.add_scan_arguments(p)

    def scan_probes(self, args: argparse.Namespace) -> int:
        from gateway.cli.scan import parse_ranges

        return len(parse_ranges(args.units, width=None, low=1, high=247))

    async def scan(self, args: argparse.Namespace, progress: Progress) -> list[Found]:
        from gateway.southbound.modbus.commission import scan_line

        return await scan_line(args, progress)

    def snippet_groups(
        self, args: argparse.Namespace, found: Sequence[Found]
    ) -> tuple[list[str], dict[str, tuple[str, list[str]]]]:
        """Whatever the profile has, energy registers in one group and the rest in
        the other; without ``--profile``, a note saying what to set."""
        from gateway.cli.snippet import poll_groups

        if not args.profile:
            notes = [
                "# Scanned without --profile: set each meter's profile (its register map: a",
                '# name such as "sdm630" or a path to a profile file; `metergw read --unit N',
                "# --profile NAME` shows what it reads), and keep in the poll group only",
                "# quantities the profile has (check-config names any that are missing).",
            ]
            return notes, {"energy": ("15m", ["energy_import_total_kwh"])}
        return [], poll_groups(found, by_kind=True)

    def snippet_meter(self, args: argparse.Namespace, found: Found) -> list[str]:
        lines = [f"unit = {found.ident}"]
        if args.profile:
            lines.append(f'profile = "{_profile_ref(args.profile)}"')
        else:
            lines.append('# profile = "..."  # required: the register map of this meter')
        return lines


def _profile_ref(profile: str) -> str:
    # A path given on the command line is relative to here, not to the config file.
    if "/" in profile or profile.endswith(".toml"):
        return str(Path(profile).resolve())
    return profile
