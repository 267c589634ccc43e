"""The scenario file format (TOML), validated completely before any I/O.

::

    [simulation]
    start = 2026-11-23T00:00:00Z   # optional; default: now
    speed = 1.0                    # sim seconds per real second
    seed = 1                       # meters derive their seeds from it and their address
    tz = "Asia/Shanghai"           # the meters' local time
    history_days = 7               # records the meters keep
    tariffs = [["00:00", 4], ["08:00", 2], ["12:00", 3], ["17:00", 2], ["23:00", 4]]

    [control]                      # optional: the fault HTTP API
    host = "127.0.0.1"
    port = 18090

    [[dlt645]]                     # a bus of DL/T 645 meters
    name = "rs485-1"
    variant = "dlt645-2007"        # or "dlt645-1997"
    pty = "var/demo/rs485-1"       # link to a pty ("" = no link), or:
    # tcp = "127.0.0.1:16001"      # a transparent serial server (port 0 = any)
    baud = 2400
    parity = "E"
    emulate_timing = true
    turnaround = 0.02
    meters = ["000000000001", "000000000002"]   # or first = "...", count = N
    repeat = 1                     # N copies: name-1.., port+i, addresses continue
    load_profile = true            # false: meters without one (hourly freezes only)
    phases = 3                     # 1: single-phase meters; or per meter:
    # phases = {"000000000002" = 1}  # (meters not named: 3)

    [[modbus]]
    name = "sdm630"
    tcp = "127.0.0.1:15020"        # or pty = "var/demo/modbus-1"
    profile = "sdm630"             # name in config/profiles/ or a path
    units = [1]
    repeat = 1

    [[concentrator]]
    gw = "conc-demo"
    broker = "127.0.0.1:11883"
    meters = 20                    # how many virtual meters
    first = "000000100001"
    interval = 5.0                 # every meter once per interval, or:
    # rate = 1000                  # readings per second
    batch = 100                    # readings per message
    backlog = 10000                # messages kept while offline
    seq_file = "var/sim/conc-demo.seq"  # optional: continue seq across restarts
    repeat = 1

    [[faults]]                     # the fault timeline
    at = 20                        # real seconds after the start
    duration = 40                  # optional; default: until cleared
    target = "000000000003"        # meter address, bus name, "modbus-name/unit" or gw
    fault = "no_answer"
    params = {}

Errors are :class:`ScenarioError` with one line per problem,
``FILE: section.key: message``.
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.meter.curve import TariffSchedule


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _endpoint(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return text


Endpoint = Annotated[str, pydantic.AfterValidator(_endpoint)]
Address = Annotated[str, Field(pattern=r"^[0-9]{12}$")]


class Simulation(_Section):
    start: datetime | None = None
    speed: Annotated[float, Field(ge=0)] = 1.0
    seed: int = 1
    tz: str = "Asia/Shanghai"
    history_days: Annotated[int, Field(ge=1, le=62)] = 7
    tariffs: list[tuple[str, int]] | None = None

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("start needs a time zone (e.g. 2026-11-23T00:00:00Z)")
        return v

    @field_validator("tz")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("tariffs")
    @classmethod
    def _tariffs(cls, v: list[tuple[str, int]] | None) -> list[tuple[str, int]] | None:
        if v is not None:
            TariffSchedule.parse(v)
        return v

    def schedule(self) -> TariffSchedule | None:
        return TariffSchedule.parse(self.tariffs) if self.tariffs is not None else None


class Control(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 18090


class _Transport(_Section):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    pty: str | None = None
    tcp: Endpoint | None = None
    repeat: Annotated[int, Field(ge=1, le=1000)] = 1

    @model_validator(mode="after")
    def _one_transport(self) -> Any:
        if (self.pty is None) == (self.tcp is None):
            raise ValueError("give exactly one of 'pty' or 'tcp'")
        if self.pty is not None and self.repeat > 1 and self.pty:
            raise ValueError("'repeat' with a pty link would reuse the link; use tcp")
        return self


class Dlt645Section(_Transport):
    variant: Literal["dlt645-2007", "dlt645-1997"] = "dlt645-2007"
    baud: Annotated[int, Field(gt=0)] = 2400
    parity: Literal["E", "O", "N"] = "E"
    emulate_timing: bool = False
    turnaround: Annotated[float, Field(ge=0)] = 0.02
    meters: list[Address] | None = None
    first: Address | None = None
    count: Annotated[int, Field(ge=1, le=10_000)] | None = None
    peak_kw: Annotated[float, Field(gt=0)] | None = None
    load_profile: bool = True
    """False: the meters keep no load profile (backfill uses their hourly freezes)."""
    phases: Literal[1, 3] | dict[Address, Literal[1, 3]] = 3
    """1: single-phase meters (no phase 2/3 values; FFH in load records); a table gives
    it per meter address (the others: 3)."""

    def phases_of(self, address: str) -> int:
        """The number of phases of the meter at ``address``."""
        if isinstance(self.phases, dict):
            return self.phases.get(address, 3)
        return self.phases

    @model_validator(mode="after")
    def _meters(self) -> Any:
        if (self.meters is None) == (self.first is None or self.count is None):
            raise ValueError("give either 'meters' or both 'first' and 'count'")
        if isinstance(self.phases, dict):
            strangers = sorted(set(self.phases) - set(self.addresses()))
            if strangers:
                raise ValueError(f"phases: {', '.join(strangers)} are not meters of this bus")
        return self

    def addresses(self, copy: int = 0) -> list[str]:
        """The meter addresses of the ``copy``-th repetition of this bus."""
        if self.meters is not None:
            base = self.meters
            if copy == 0:
                return list(base)
            step = len(base)
            return [f"{int(a) + copy * step:012d}" for a in base]
        assert self.first is not None
        assert self.count is not None
        start = int(self.first) + copy * self.count
        return [f"{start + i:012d}" for i in range(self.count)]


class ModbusSection(_Transport):
    profile: str = "sdm630"
    units: Annotated[list[Annotated[int, Field(ge=1, le=247)]], Field(min_length=1)] = [1]
    baud: Annotated[int, Field(gt=0)] = 9600


class ConcentratorSection(_Section):
    gw: Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[^/+#\s]+$")]
    broker: Endpoint = "127.0.0.1:1883"
    meters: Annotated[int, Field(ge=1, le=100_000)] = 10
    first: Address = "000000100001"
    proto: Literal["dlt645-2007", "dlt645-1997", "modbus", "other"] = "dlt645-2007"
    interval: Annotated[float, Field(gt=0)] | None = None
    rate: Annotated[float, Field(ge=0)] | None = None
    batch: Annotated[int, Field(ge=1, le=10_000)] = 100
    backlog: Annotated[int, Field(ge=1)] = 10_000
    seq_file: str | None = None
    """Where the next seq is kept across restarts (None: every run starts at 0)."""
    repeat: Annotated[int, Field(ge=1, le=1000)] = 1

    def addresses(self, copy: int = 0) -> list[str]:
        """The virtual meters' addresses of the ``copy``-th repetition."""
        start = int(self.first) + copy * self.meters
        return [f"{start + i:012d}" for i in range(self.meters)]

    @model_validator(mode="after")
    def _pace(self) -> Any:
        if self.interval is not None and self.rate is not None:
            raise ValueError("give 'interval' or 'rate', not both")
        return self


class FaultSection(_Section):
    at: Annotated[float, Field(ge=0)] = 0.0
    duration: Annotated[float, Field(gt=0)] | None = None
    target: Annotated[str, Field(min_length=1)]
    fault: Annotated[str, Field(min_length=1)]
    params: dict[str, Any] = {}


class ScenarioFile(_Section):
    """A whole scenario file."""

    simulation: Simulation = Simulation()
    control: Control | None = None
    dlt645: list[Dlt645Section] = []
    modbus: list[ModbusSection] = []
    concentrator: list[ConcentratorSection] = []
    faults: list[FaultSection] = []
    source: str = ""


def _problems(exc: pydantic.ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "scenario"
        lines.append(f"{source}: {loc}: {err['msg']}")
    return "\n".join(lines)


def parse_scenario(text: str, source: str = "<scenario>") -> ScenarioFile:
    """Parse and validate scenario TOML; :class:`ScenarioError` lists every problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    return validate_scenario(doc, source)


def validate_scenario(doc: dict[str, Any], source: str) -> ScenarioFile:
    """Validate a scenario given as data (parsed TOML, or built by the CLI)."""
    try:
        scenario = ScenarioFile.model_validate({**doc, "source": source})
    except pydantic.ValidationError as exc:
        raise ScenarioError(_problems(exc, source)) from None
    _check_names(scenario)
    return scenario


def _check_names(sc: ScenarioFile) -> None:
    seen: dict[str, str] = {}
    problems = []

    def claim(name: str, where: str) -> None:
        if name in seen:
            problems.append(f"{sc.source}: {where}: {name!r} is already used by {seen[name]}")
        seen[name] = where

    for i, bus in enumerate(sc.dlt645):
        for copy in range(bus.repeat):
            where = f"dlt645.{i}"
            claim(bus.name if bus.repeat == 1 else f"{bus.name}-{copy + 1}", where)
            for address in bus.addresses(copy):
                claim(address, f"{where}.meters")
    for i, srv in enumerate(sc.modbus):
        for copy in range(srv.repeat):
            claim(srv.name if srv.repeat == 1 else f"{srv.name}-{copy + 1}", f"modbus.{i}")
    for i, conc in enumerate(sc.concentrator):
        for copy in range(conc.repeat):
            claim(conc.gw if conc.repeat == 1 else f"{conc.gw}-{copy + 1}", f"concentrator.{i}")
            for address in conc.addresses(copy):
                claim(address, f"concentrator.{i}.meters")
    if problems:
        raise ScenarioError("\n".join(problems))


def read_scenario_file(path: str | Path) -> ScenarioFile:
    """Read and validate a scenario file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read scenario: {exc.strerror or exc}") from None
    return parse_scenario(text, str(p))
