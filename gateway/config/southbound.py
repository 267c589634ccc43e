"""Southbound sections: buses, the meters on them, and poll groups.

What every protocol shares lives here; what one protocol adds (a DL/T 645
meter's address, a Modbus meter's unit and profile) lives in its plugin
(:mod:`gateway.southbound`), whose bus model subclasses :class:`BusConfig`.
``[[buses]]`` is the union of the registered plugins' models on ``protocol``
(:data:`AnyBus`), and the checks that need protocol tables are the plugins'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar, Union

from pydantic import (
    Field,
    GetJsonSchemaHandler,
    ModelWrapValidatorHandler,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from gateway.config.base import ConfigPath, Duration, Section, did_you_mean
from gateway.config.validation import ValidationConfig, ValidationOverride
from protocols.quantities import QUANTITIES

M = TypeVar("M", bound="MeterConfig")


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
    """A meter on a bus: what every protocol's meter has. Each protocol's meter model
    (the type of its bus model's ``meters``) adds how the meter is found on its line."""

    name: str | None = None
    """Meter id used in readings; defaults to where it sits on its bus (see its protocol)."""
    poll: list[str] = Field(default_factory=list)
    """Names of the poll groups this meter is read with."""
    timezone: str | None = None
    """Time zone of the meter's clock; defaults to ``gateway.timezone``."""
    validation: ValidationOverride | None = None
    """VEE thresholds of this meter, over its profile's and the ``[validation]`` ones."""

    @property
    def ident(self) -> str:
        """Where the meter sits on its bus, as text (an address, a unit id)."""
        raise NotImplementedError(f"{type(self).__name__} does not say where its meter sits")

    @property
    def meter_id(self) -> str:
        """The id of the meter's readings: its ``name``, or :meth:`default_id`."""
        return self.name or self.default_id()

    def default_id(self) -> str:
        """The meter id when no ``name`` is given."""
        return self.ident


def needs_keys(
    data: Any,
    handler: ModelWrapValidatorHandler[M],
    stand_ins: Mapping[str, Any],
    message: str,
) -> M:
    """Validate a meter that must have each key of ``stand_ins`` (how its protocol finds
    it): without one, the meter's other problems are reported as they are (an ``adress``
    typo is an unknown key), and only when it has none is it ``message``, one line for
    the meter rather than a "Field required" per key. The stand-ins fill the missing keys
    while the rest is checked; they must be valid values."""
    if isinstance(data, dict):
        missing = {k: v for k, v in stand_ins.items() if data.get(k) is None}
        if missing:
            handler({**data, **missing})  # raises the meter's other problems
            raise ValueError(message)
    return handler(data)


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
    """One bus: one serial line or one TCP connection, one transaction at a time.

    What every protocol's bus has; each protocol's plugin subclasses it
    (``bus_model``) with ``protocol`` narrowed to its names, its own meter model
    and keys. ``[[buses]]`` is validated as the union of those models, told
    apart by ``protocol``: see the sections of each protocol below.
    """

    SERIAL_DEFAULTS: ClassVar[Mapping[str, tuple[int, str]]] = {}
    """Protocol name -> the (baud, parity) a ``serial`` table without them gets."""

    name: str
    protocol: str
    """The protocol spoken on the bus: one of the names below, each with keys of its own."""
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
    """How often a meter's clock is read to measure its drift (meters that keep one)."""
    clock_drift_max: Duration = 30.0
    """A meter clock off by more than this raises a ``clock_drift`` event."""
    backfill: bool = True
    """Read a meter's records (DL/T 645 frozen registers, load profile) to fill a gap
    when it returns."""
    probe_share: float = Field(default=0.1, ge=0.0, le=1.0)
    """Share of bus time to probe offline meters at their group's cadence (0: off)."""
    meters: Sequence[MeterConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _serial_defaults(cls, data: Any) -> Any:
        """Line settings default by protocol (:attr:`SERIAL_DEFAULTS`)."""
        if isinstance(data, dict) and isinstance(data.get("serial"), dict):
            protocol = str(data.get("protocol", ""))
            baud, parity = cls.SERIAL_DEFAULTS.get(protocol, (2400, "E"))
            data = {**data, "serial": {"baud": baud, "parity": parity, **data["serial"]}}
        return data

    @model_validator(mode="after")
    def _check_link(self) -> Self:
        if (self.serial is None) == (self.tcp is None):
            raise ValueError("a bus needs exactly one of 'serial' or 'tcp'")
        if self.offline_after < self.suspect_after:
            raise ValueError("offline_after must be >= suspect_after")
        return self

    def time_sync_config(self) -> TimeSyncConfig | None:
        """The bus's ``[buses.time_sync]``; ``None`` where its protocol sets no clocks."""
        return None


def _validate_bus(value: Any, info: ValidationInfo) -> BusConfig:
    """``[[buses]]`` entry -> the bus model of its protocol's plugin (the registry's
    union, told apart by ``protocol``), so that each protocol validates its own keys.
    Looked up at validation time: a plugin registered at run time is known at once."""
    from gateway.southbound.registry import plugin_for, protocol_names

    if isinstance(value, BusConfig):
        return value
    if not isinstance(value, dict):
        raise ValueError("a bus is a table ([[buses]])")
    if "protocol" not in value:
        raise ValidationError.from_exception_data(
            "BusConfig", [{"type": "missing", "loc": ("protocol",), "input": value}]
        )
    names = protocol_names()
    protocol = value["protocol"]
    if protocol not in names:
        expected = ", ".join(repr(n) for n in names[:-1]) + f" or {names[-1]!r}"
        if len(names) == 1:
            expected = repr(names[0])
        raise ValidationError.from_exception_data(
            "BusConfig",
            [
                {
                    "type": "literal_error",
                    "loc": ("protocol",),
                    "input": protocol,
                    "ctx": {"expected": expected},
                }
            ],
        )
    return plugin_for(protocol).bus_model.model_validate(value, context=info.context)


class _BusUnionSchema:
    """The JSON Schema of ``[[buses]]``: the plugins' bus models as a ``oneOf`` with a
    discriminator on ``protocol``, built when asked, from the plugins then registered."""

    def __get_pydantic_json_schema__(
        self, core: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        from gateway.southbound.registry import plugins

        models = tuple(p.bus_model for p in plugins())
        union: Any = models[0]
        if len(models) > 1:
            union = Annotated[Union[models], Field(discriminator="protocol")]  # noqa: UP007
        return handler(TypeAdapter(union).core_schema)


AnyBus = Annotated[BusConfig, PlainValidator(_validate_bus), _BusUnionSchema()]
"""A ``[[buses]]`` entry: the discriminated union (on ``protocol``) of every registered
protocol's bus model."""


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

    Each bus's plugin judges its meters (``check``): a DL/T 645 meter's
    quantities must map to data identifiers of its variant; a Modbus meter's
    profile must exist and cover them. Problems are named
    ``buses[0].meters[2].poll: ...``. Groups that do not exist are reported by
    the root config, not here.
    """
    from gateway.southbound.registry import plugin_for

    problems: list[str] = []
    dirs = tuple(Path(d) for d in profile_dirs)
    for b, bus in enumerate(buses):
        for where, message in plugin_for(bus.protocol).check(bus, poll_groups, dirs):
            problems.append(f"buses[{b}].{where}: {message}")
    return problems


def meter_keys(meter: MeterConfig, poll_groups: Mapping[str, PollGroupConfig]) -> list[str]:
    """The quantities ``meter`` is polled for, in group order (repeats kept); groups
    that do not exist are left out (reported elsewhere)."""
    return [k for g in meter.poll if g in poll_groups for k in poll_groups[g].quantities]


def meter_thresholds(
    defaults: ValidationConfig,
    buses: Sequence[BusConfig],
    profile_dirs: Sequence[str | Path] = (),
) -> dict[str, ValidationConfig]:
    """Meter id -> its VEE thresholds, for the meters whose protocol's own table (a
    Modbus profile's ``[validation]``) or own ``validation`` table changes the defaults
    (the others use ``defaults``).

    A profile that cannot be found or read is left to :func:`southbound_problems`.
    """
    from gateway.southbound.registry import plugin_for

    out: dict[str, ValidationConfig] = {}
    dirs = tuple(Path(d) for d in profile_dirs)
    for bus in buses:
        plugin = plugin_for(bus.protocol)
        for meter in bus.meters:
            table = plugin.meter_validation(meter, dirs)
            if table is not None or meter.validation is not None:
                out[meter.meter_id] = defaults.merged(table, meter.validation)
    return out
