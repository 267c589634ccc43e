"""Southbound sections: buses, the meters on them, and poll groups."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.config.base import ConfigPath, Duration, ProfileRef, Section, did_you_mean
from gateway.config.validation import ValidationConfig, ValidationOverride, profile_override
from protocols.quantities import QUANTITIES

Protocol = Literal["dlt645-2007", "dlt645-1997", "modbus-rtu", "modbus-tcp"]
_ADDRESS = re.compile(r"[0-9]{12}")


class SerialLink(Section):
    """A serial port. Prefer stable ``/dev/serial/by-id/...`` names."""

    port: ConfigPath
    baud: int = Field(default=2400, gt=0)
    parity: Literal["N", "E", "O"] = "E"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1


class TcpLink(Section):
    """A TCP endpoint: a Modbus TCP device or a transparent serial server (DTU)."""

    host: str
    port: int = Field(ge=1, le=65535)
    connect_timeout: Duration = 3.0


class MeterConfig(Section):
    """A meter on a bus."""

    name: str | None = None
    """Meter id used in readings; defaults to the address (or ``unit-N`` for Modbus)."""
    address: str | None = None
    """DL/T 645: the 12-digit meter address, as printed on the nameplate."""
    unit: int | None = Field(default=None, ge=0, le=247)
    """Modbus: the unit (device) id."""
    profile: ProfileRef | None = None
    """Modbus: the register-map profile name (``config/profiles/NAME.toml``) or path."""
    poll: list[str] = Field(default_factory=list)
    """Names of the poll groups this meter is read with."""
    timezone: str | None = None
    """Time zone of the meter's clock; defaults to ``gateway.timezone``."""
    validation: ValidationOverride | None = None
    """VEE thresholds of this meter, over its profile's and the ``[validation]`` ones."""

    @field_validator("profile")
    @classmethod
    def _profile_path_from_config_dir(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A relative profile path means the config file's folder, wherever the daemon runs.
        base = (info.context or {}).get("base_dir")
        if value and base is not None and ("/" in value or value.endswith(".toml")):
            return str(Path(base) / value)  # an absolute value stays as it is
        return value

    @model_validator(mode="after")
    def _check_address(self) -> Self:
        if self.address is not None and not _ADDRESS.fullmatch(self.address):
            raise ValueError(f"address {self.address!r} must be 12 decimal digits")
        return self

    @property
    def meter_id(self) -> str:
        if self.name:
            return self.name
        if self.address is not None:
            return self.address
        return f"unit-{self.unit}"


class TimeSyncConfig(Section):
    """``[buses.time_sync]``: set DL/T 645 meters' clocks by broadcast time (0x08).

    Off unless enabled. When a meter's clock, read every ``clock_check_interval``,
    is off by more than ``threshold``, the gateway broadcasts its time to the
    whole line (no reply), at most once per ``min_interval`` on this bus, reads
    the meter's clock again to confirm, and records a ``time_sync`` event with
    the drift before and after.
    """

    enabled: bool = False
    """Whether broadcasts are sent at all (never unless set)."""
    threshold: Duration = 5.0
    """A clock off by more than this (either way) is set."""
    min_interval: Duration = 3600.0
    """The shortest time between two broadcasts on this bus."""

    @model_validator(mode="after")
    def _check_threshold(self) -> Self:
        if self.threshold < 1:
            raise ValueError("threshold: under 1 s cannot be set (the broadcast carries seconds)")
        return self


class BusConfig(Section):
    """One bus: one serial line or one TCP connection, one transaction at a time."""

    name: str
    protocol: Protocol
    serial: SerialLink | None = None
    tcp: TcpLink | None = None
    timeout: Duration = 0.5
    """How long to wait for a meter's reply."""
    retries: int = Field(default=1, ge=0, le=5)
    inter_frame_delay: Duration = 0.0
    """Silence kept between the end of a reply and the next request."""
    suspect_after: int = Field(default=1, ge=1)
    """Consecutive misses before a meter is suspect."""
    offline_after: int = Field(default=3, ge=1)
    """Consecutive misses before a meter is offline."""
    offline_backoff_max: Duration = 300.0
    """Longest pause between retries of an offline meter (and probes of a faulty bus)."""
    clock_check_interval: Duration = 3600.0
    """How often a DL/T 645 meter's clock is read to measure its drift."""
    clock_drift_max: Duration = 30.0
    """A meter clock off by more than this raises a ``clock_drift`` event."""
    backfill: bool = True
    """Read a DL/T 645 meter's frozen records to fill a gap when it returns."""
    time_sync: TimeSyncConfig = Field(default_factory=TimeSyncConfig)
    """DL/T 645: set meters' clocks by broadcast time (off by default)."""
    probe_share: float = Field(default=0.1, ge=0.0, le=1.0)
    """Share of bus time to probe offline meters at their group's cadence (0: off)."""
    max_gap: int = Field(default=10, ge=0, le=125)
    """Modbus: unwanted registers read through to merge two reads into one."""
    max_registers: int = Field(default=125, ge=1, le=125)
    """Modbus: most registers in one merged read."""
    meters: list[MeterConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _serial_defaults(cls, data: Any) -> Any:
        """Line settings default by protocol: DL/T 645 8E1 (2400, 1997: 1200), Modbus 9600 8N1."""
        if isinstance(data, dict) and isinstance(data.get("serial"), dict):
            protocol = str(data.get("protocol", ""))
            baud = {"dlt645-1997": 1200, "modbus-rtu": 9600, "modbus-tcp": 9600}.get(protocol, 2400)
            parity = "N" if protocol.startswith("modbus") else "E"
            data = {**data, "serial": {"baud": baud, "parity": parity, **data["serial"]}}
        return data

    @model_validator(mode="after")
    def _check_link(self) -> Self:
        if (self.serial is None) == (self.tcp is None):
            raise ValueError("a bus needs exactly one of 'serial' or 'tcp'")
        if self.protocol == "modbus-tcp" and self.tcp is None:
            raise ValueError("protocol 'modbus-tcp' needs a 'tcp' link")
        if self.offline_after < self.suspect_after:
            raise ValueError("offline_after must be >= suspect_after")
        if self.time_sync.enabled and not self.protocol.startswith("dlt645"):
            raise ValueError("time_sync: only DL/T 645 meters take a broadcast time")
        if self.time_sync.enabled and len({m.timezone for m in self.meters}) > 1:
            raise ValueError(
                "time_sync: the meters of this bus keep different time zones, "
                "and a broadcast sets every clock to the same local time"
            )
        for i, m in enumerate(self.meters):
            if self.protocol.startswith("dlt645") and m.address is None:
                raise ValueError(f"meters[{i}]: a DL/T 645 meter needs an 'address'")
            if self.protocol.startswith("modbus") and (m.unit is None or m.profile is None):
                raise ValueError(f"meters[{i}]: a Modbus meter needs 'unit' and 'profile'")
        return self


class PollGroupConfig(Section):
    """Quantities read together at one interval, aligned to the wall clock."""

    interval: Duration
    quantities: list[str] = Field(min_length=1)
    """Canonical quantity keys (``energy_import_total_kwh``, ``voltage_l1_v``, ...)."""

    # Field validators, not one after the model: each runs with the others, so a group
    # with a misspelt key and an unknown quantity reports both in one pass.
    @field_validator("quantities")
    @classmethod
    def _check_quantities(cls, quantities: list[str]) -> list[str]:
        unknown = [k for k in quantities if k not in QUANTITIES]
        if unknown:
            named = []
            for key in unknown:
                hint = did_you_mean(key, QUANTITIES)
                named.append(f"{key!r} ({hint})" if hint else repr(key))
            raise ValueError(f"unknown quantity key(s): {', '.join(named)}")
        return quantities

    @field_validator("interval")
    @classmethod
    def _check_interval(cls, interval: float) -> float:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        return interval


def southbound_problems(
    poll_groups: Mapping[str, PollGroupConfig],
    buses: Sequence[BusConfig],
    profile_dirs: Sequence[str | Path] = (),
) -> list[str]:
    """Whether each meter can read its poll groups' quantities, one line per problem.

    A DL/T 645 meter's quantities must map to data identifiers of its
    variant; a Modbus meter's profile must exist and cover them. Problems are
    named ``buses[0].meters[2].poll: ...``. Groups that do not exist are
    reported by the root config, not here.
    """
    from drivers.dlt645.plan import UnmappedKeys, plan_dis
    from protocols.dlt645 import Variant
    from protocols.modbus_profile import ProfileError, resolve_profile

    problems: list[str] = []
    for b, bus in enumerate(buses):
        for m, meter in enumerate(bus.meters):
            where = f"buses[{b}].meters[{m}]"
            keys = [k for g in meter.poll if g in poll_groups for k in poll_groups[g].quantities]
            if bus.protocol.startswith("dlt645"):
                try:
                    plan_dis(keys, Variant(bus.protocol))
                except UnmappedKeys as exc:
                    problems.append(f"{where}.poll: {exc}")
                continue
            try:
                profile = resolve_profile(meter.profile or "", profile_dirs)
            except ProfileError as exc:
                problems.append(f"{where}.profile: {exc}")
                continue
            try:
                profile_override(profile.validation, profile.source)
            except ValueError as exc:
                problems.append(f"{where}.profile: {exc}")
            missing = [k for k in dict.fromkeys(keys) if k not in profile.keys]
            if missing:
                problems.append(
                    f"{where}.poll: profile {profile.name!r} has no register for "
                    f"{', '.join(missing)}"
                )
    return problems


def meter_thresholds(
    defaults: ValidationConfig,
    buses: Sequence[BusConfig],
    profile_dirs: Sequence[str | Path] = (),
) -> dict[str, ValidationConfig]:
    """Meter id -> its VEE thresholds, for the meters whose profile or own
    ``validation`` table changes the defaults (the others use ``defaults``).

    A profile that cannot be found or read is left to :func:`southbound_problems`.
    """
    from protocols.modbus_profile import ProfileError, resolve_profile

    out: dict[str, ValidationConfig] = {}
    for bus in buses:
        for meter in bus.meters:
            profile_table: ValidationOverride | None = None
            if meter.profile is not None:
                try:
                    profile = resolve_profile(meter.profile, profile_dirs)
                    if profile.validation:
                        profile_table = profile_override(profile.validation, profile.source)
                except (ProfileError, ValueError):
                    pass
            if profile_table is not None or meter.validation is not None:
                out[meter.meter_id] = defaults.merged(profile_table, meter.validation)
    return out
