"""The config of a DL/T 645 bus (``protocol = "dlt645-2007"`` or ``"dlt645-1997"``)."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, ModelWrapValidatorHandler, model_validator

from gateway.config.southbound import BusConfig, MeterConfig, TimeSyncConfig, needs_keys

_ADDRESS = re.compile(r"[0-9]{12}")


class Dlt645Meter(MeterConfig):
    """A DL/T 645 meter, found on its line by its address."""

    address: str
    """The 12-digit meter address, as printed on the nameplate."""

    @model_validator(mode="wrap")
    @classmethod
    def _needs_address(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        stand_in = {"address": "000000000000"}
        return needs_keys(data, handler, stand_in, "a DL/T 645 meter needs an 'address'")

    @model_validator(mode="after")
    def _check_address(self) -> Self:
        if not _ADDRESS.fullmatch(self.address):
            raise ValueError(f"address {self.address!r} must be 12 decimal digits")
        return self

    @property
    def ident(self) -> str:
        return self.address


class Dlt645Bus(BusConfig):
    """A DL/T 645 line: RS-485 at 2400 baud 8E1 (1997 meters: 1200), or a transparent
    serial server (DTU) over TCP."""

    SERIAL_DEFAULTS: ClassVar = {"dlt645-2007": (2400, "E"), "dlt645-1997": (1200, "E")}

    protocol: Literal["dlt645-2007", "dlt645-1997"]
    """The edition of DL/T 645 the meters speak."""
    time_sync: TimeSyncConfig = Field(default_factory=TimeSyncConfig)
    """Set meters' clocks by broadcast time (off by default)."""
    meters: list[Dlt645Meter] = Field(default_factory=list)
    """The meters on this line, each by its address."""

    @model_validator(mode="after")
    def _check_time_sync(self) -> Self:
        if self.time_sync.enabled and len({m.timezone for m in self.meters}) > 1:
            raise ValueError(
                "time_sync: the meters of this bus keep different time zones, "
                "and a broadcast sets every clock to the same local time"
            )
        return self

    def time_sync_config(self) -> TimeSyncConfig | None:
        return self.time_sync
