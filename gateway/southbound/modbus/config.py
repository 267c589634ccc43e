"""The config of a Modbus bus: RTU on a serial line, TCP, or RTU framing over TCP
(``protocol = "modbus-rtu"`` with a ``tcp`` link: a serial server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.config.base import ProfileRef
from gateway.config.southbound import BusConfig, MeterConfig, needs_keys


class ModbusMeter(MeterConfig):
    """A Modbus device, found on its line by its unit id, read with a profile."""

    unit: int = Field(ge=0, le=247)
    """The unit (device) id."""
    profile: ProfileRef
    """The register-map profile name (``config/profiles/NAME.toml``) or path."""

    @model_validator(mode="wrap")
    @classmethod
    def _needs_unit_and_profile(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        stand_ins = {"unit": 1, "profile": "stand-in"}
        return needs_keys(data, handler, stand_ins, "a Modbus meter needs 'unit' and 'profile'")

    @field_validator("profile")
    @classmethod
    def _profile_path_from_config_dir(cls, value: str, info: ValidationInfo) -> str:
        # A relative profile path means the config file's folder, wherever the daemon runs.
        base = (info.context or {}).get("base_dir")
        if value and base is not None and ("/" in value or value.endswith(".toml")):
            return str(Path(base) / value)  # an absolute value stays as it is
        return value

    @property
    def ident(self) -> str:
        return str(self.unit)

    def default_id(self) -> str:
        return f"unit-{self.unit}"


class ModbusBus(BusConfig):
    """A Modbus line: RTU at 9600 baud 8N1, TCP, or RTU over a TCP serial server."""

    SERIAL_DEFAULTS: ClassVar = {"modbus-rtu": (9600, "N"), "modbus-tcp": (9600, "N")}

    protocol: Literal["modbus-rtu", "modbus-tcp"]
    """``modbus-rtu``: RTU framing (on ``serial``, or through a serial server on ``tcp``);
    ``modbus-tcp``: Modbus TCP (``tcp`` only)."""
    max_gap: int = Field(default=10, ge=0, le=125)
    """Unwanted registers read through to merge two reads into one."""
    max_registers: int = Field(default=125, ge=1, le=125)
    """Most registers in one merged read."""
    meters: list[ModbusMeter] = Field(default_factory=list)
    """The devices on this line, each by its unit id."""

    @model_validator(mode="before")
    @classmethod
    def _no_time_sync(cls, data: Any) -> Any:
        sync = data.get("time_sync") if isinstance(data, dict) else None
        if isinstance(sync, dict) and sync.get("enabled"):
            raise ValueError("time_sync: only DL/T 645 meters take a broadcast time")
        return data

    @model_validator(mode="after")
    def _check_tcp(self) -> Self:
        if self.protocol == "modbus-tcp" and self.tcp is None:
            raise ValueError("protocol 'modbus-tcp' needs a 'tcp' link")
        return self
