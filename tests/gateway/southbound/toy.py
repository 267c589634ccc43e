"""A toy meter protocol, defined here and nowhere in the gateway: its meters are
in-process objects on named in-process "lines" (the bus's ``tcp.host``).

It is everything a protocol plugin is (config models, reader, check, capacity
estimate) in one file, registered at run time: what tests/gateway/southbound
proves is that the core takes a new protocol without being edited.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from drivers.errors import LinkError, Timeout
from gateway.config.checks import Finding
from gateway.config.southbound import BusConfig, MeterConfig, PollGroupConfig, meter_keys
from gateway.southbound import MeterReader, MeterReaderOf, ProtocolPlugin, ReadResult, Sample
from protocols.quantities import QUANTITIES

_TAG = re.compile(r"[a-z]{3}-[0-9]{2}")


@dataclass
class ToyMeterDevice:
    """A meter on a toy line: the values it answers with, and whether it answers."""

    values: dict[str, Decimal]
    answering: bool = True
    reads: int = 0

    def tick(self) -> None:
        """Energy moves on between polls, as a real register does."""
        for key in self.values:
            if QUANTITIES[key].cumulative:
                self.values[key] += Decimal("0.01")


@dataclass
class ToyLine:
    """Devices by tag; ``opened`` counts how often a reader opened the line."""

    devices: dict[str, ToyMeterDevice] = field(default_factory=dict)
    opened: int = 0


LINES: dict[str, ToyLine] = {}
"""The in-process lines, by name (a toy bus's ``tcp.host``)."""


class ToyMeter(MeterConfig):
    """A toy meter, found on its line by its tag (three letters, a dash, two digits)."""

    tag: str

    @model_validator(mode="after")
    def _check_tag(self) -> Self:
        if not _TAG.fullmatch(self.tag):
            raise ValueError(f"tag {self.tag!r} must look like 'abc-01'")
        return self

    @property
    def ident(self) -> str:
        return self.tag

    def default_id(self) -> str:
        return f"toy-{self.tag}"


class ToyBus(BusConfig):
    """A toy line."""

    protocol: Literal["toy"]
    meters: list[ToyMeter] = Field(default_factory=list)
    jitter: int = Field(default=0, ge=0)
    """A key only toy buses have."""


class ToyReader(MeterReaderOf[ToyMeter]):
    """Reads toy meters from their line's devices."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.link = f"toy:{line}"

    async def open(self) -> None:
        if self.line not in LINES:
            raise LinkError(f"{self.link}: no such toy line")
        LINES[self.line].opened += 1

    async def close(self) -> None:
        pass

    def check_keys(self, meter: ToyMeter, keys: Sequence[str]) -> None:
        device = LINES[self.line].devices[meter.tag]
        missing = [k for k in keys if k not in device.values]
        if missing:
            raise ValueError(f"meter {meter.meter_id}: no {', '.join(missing)}")

    async def read(
        self, meter: ToyMeter, keys: Sequence[str], *, probe: bool = False
    ) -> ReadResult:
        device = LINES[self.line].devices.get(meter.tag)
        if device is None or not device.answering:
            raise Timeout(f"{self.link}: toy meter {meter.tag}: no reply")
        device.reads += 1
        samples = tuple(
            Sample(k, device.values[k], QUANTITIES[k].unit) for k in keys if k in device.values
        )
        device.tick()
        return ReadResult(samples)


class ToyPlugin(ProtocolPlugin):
    """The toy protocol: every hook a plugin needs to be polled and checked."""

    names = ("toy",)
    bus_model = ToyBus
    noun = "toy meter"

    def open_reader(
        self,
        bus: BusConfig,
        *,
        profile_dirs: Sequence[Path] = (),
        on_discard: Callable[[str], None] | None = None,
    ) -> MeterReader:
        assert bus.tcp is not None
        return ToyReader(bus.tcp.host)

    def check(
        self, bus: BusConfig, groups: Mapping[str, PollGroupConfig], profile_dirs: Sequence[Path]
    ) -> list[Finding]:
        """Toy meters know energy and voltage, nothing else."""
        out: list[Finding] = []
        for m, meter in enumerate(bus.meters):
            odd = [k for k in meter_keys(meter, groups) if not k.startswith(("energy", "volt"))]
            if odd:
                out.append((f"meters[{m}].poll", f"a toy meter has no {', '.join(odd)}"))
        return out

    def poll_seconds(
        self, bus: BusConfig, meter: MeterConfig, keys: Sequence[str], profile_dirs: Sequence[Path]
    ) -> float | None:
        return 0.5 * len(keys)  # a slow toy: half a second a value
