"""The root of the config file."""

from __future__ import annotations

import socket
import zoneinfo

from pydantic import Field, field_validator

from gateway.config.base import ConfigPath, Duration, Section, did_you_mean
from gateway.config.northbound import BufferConfig, IngestConfig, SinksConfig
from gateway.config.ops import HttpConfig, LoggingConfig
from gateway.config.southbound import AnyBus, PollGroupConfig
from gateway.config.validation import ValidationConfig


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone; ValueError naming it (and a close match) if not."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        hint = did_you_mean(name, zoneinfo.available_timezones())
        raise ValueError(f"unknown time zone {name!r}" + (f"; {hint}" if hint else "")) from None
    return name


class GatewaySection(Section):
    """``[gateway]``: who this box is and where it keeps its state."""

    name: str = Field(default_factory=socket.gethostname)
    timezone: str = "Asia/Shanghai"
    """Default time zone of meter clocks (DL/T 645 meters keep local time)."""
    state_dir: ConfigPath = "/var/lib/metergw"
    """Where the buffer and other state live (the systemd unit's StateDirectory);
    a relative path is relative to the config file."""
    shutdown_timeout: Duration = 10.0
    """On SIGTERM, the longest the daemon takes to commit, flush and close before it exits."""

    _tz = field_validator("timezone")(check_timezone)


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

    # The schema only: load_config() also checks references between sections
    # (gateway.config.checks) and the meters' quantities, in the same pass.

    gateway: GatewaySection = Field(default_factory=GatewaySection)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    ingest: IngestConfig | None = None
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    embedded_broker: EmbeddedBrokerConfig = Field(default_factory=EmbeddedBrokerConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    poll_groups: dict[str, PollGroupConfig] = Field(default_factory=dict)
    buses: list[AnyBus] = Field(default_factory=list)
    """The buses; each protocol (``protocol``) has keys of its own, see below."""

    def buffer_path(self) -> str:
        """Where the buffer database lives."""
        return self.buffer.path or f"{self.gateway.state_dir}/buffer.sqlite"
