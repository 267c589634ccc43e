"""The root of the config file."""

from __future__ import annotations

import socket
import zoneinfo
from typing import Self

from pydantic import Field, field_validator, model_validator

from gateway.config.base import Duration, Section
from gateway.config.northbound import BufferConfig, IngestConfig, SinksConfig
from gateway.config.ops import HttpConfig, LoggingConfig
from gateway.config.southbound import BusConfig, PollGroupConfig
from gateway.config.validation import ValidationConfig


def _check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


class GatewaySection(Section):
    """``[gateway]``: who this box is and where it keeps its state."""

    name: str = Field(default_factory=socket.gethostname)
    timezone: str = "Asia/Shanghai"
    """Default time zone of meter clocks (DL/T 645 meters keep local time)."""
    state_dir: str = "/var/lib/metergw"
    """Where the buffer and other state live (the systemd unit's StateDirectory)."""
    shutdown_timeout: Duration = 10.0
    """On SIGTERM, the longest the daemon takes to commit, flush and close before it exits."""

    _tz = field_validator("timezone")(_check_timezone)


class EmbeddedBrokerConfig(Section):
    """``[embedded_broker]``: an in-process MQTT broker (amqtt), for the demo only.

    Production boxes use Mosquitto or EMQX, which keep sessions and queue
    QoS 1 messages across restarts.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    """Listen address; anonymous clients are allowed, so keep it on loopback."""
    port: int = Field(default=1883, ge=1, le=65535)


class Config(Section):
    """A whole metergw config file."""

    gateway: GatewaySection = Field(default_factory=GatewaySection)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    ingest: IngestConfig | None = None
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    embedded_broker: EmbeddedBrokerConfig = Field(default_factory=EmbeddedBrokerConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    poll_groups: dict[str, PollGroupConfig] = Field(default_factory=dict)
    buses: list[BusConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        problems: list[str] = []
        bus_names: set[str] = set()
        meter_ids: set[str] = set()
        for b, bus in enumerate(self.buses):
            if bus.name in bus_names:
                problems.append(f"buses[{b}].name: duplicate bus name {bus.name!r}")
            bus_names.add(bus.name)
            for m, meter in enumerate(bus.meters):
                where = f"buses[{b}].meters[{m}]"
                if meter.meter_id in meter_ids:
                    problems.append(f"{where}: duplicate meter id {meter.meter_id!r}")
                meter_ids.add(meter.meter_id)
                for group in meter.poll:
                    if group not in self.poll_groups:
                        problems.append(f"{where}.poll: no poll group named {group!r}")
                if meter.timezone is not None:
                    try:
                        _check_timezone(meter.timezone)
                    except ValueError as exc:
                        problems.append(f"{where}.timezone: {exc}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def buffer_path(self) -> str:
        """Where the buffer database lives."""
        return self.buffer.path or f"{self.gateway.state_dir}/buffer.sqlite"
