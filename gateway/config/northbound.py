"""Northbound sections: the buffer, concentrator ingest and the sinks."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from gateway.config.base import Duration, Section


def _check_mqtt_url(url: str) -> str:
    if not url.startswith(("mqtt://", "mqtts://")):
        raise ValueError(f"{url!r} is not an MQTT URL (mqtt://host:port or mqtts://host:port)")
    return url


class BufferConfig(Section):
    """``[buffer]``: the durable SQLite store every reading passes through."""

    path: str | None = None
    """Database file; defaults to ``{gateway.state_dir}/buffer.sqlite``."""
    max_bytes: int = Field(default=2 * 1024**3, gt=0)
    """Disk budget; past it the oldest rows are dropped, counted and alarmed."""
    commit_interval: Duration = 0.05
    """Longest a reading waits for its group commit."""
    commit_max_rows: int = Field(default=5000, gt=0)


class MqttBroker(Section):
    """How to reach an MQTT broker."""

    url: str
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None
    keepalive: int = Field(default=30, ge=5)

    _url = field_validator("url")(_check_mqtt_url)


class IngestConfig(Section):
    """``[ingest]``: concentrator readings over MQTT."""

    broker: MqttBroker
    topics: list[str] = Field(default_factory=lambda: ["meters/v1/+/readings"])
    max_payload_bytes: int = Field(default=1024 * 1024, gt=0)


class InfluxSinkConfig(Section):
    """``[sinks.influx]``: InfluxDB v2 write API (or anything that speaks it)."""

    url: str
    token: SecretStr
    org: str
    bucket: str
    measurement: str = "meter"
    batch_size: int = Field(default=5000, gt=0)
    flush_interval: Duration = 1.0
    timeout: Duration = 10.0


class MqttSinkConfig(Section):
    """``[sinks.mqtt]``: real-time readings to an MQTT topic tree at QoS 1."""

    broker: MqttBroker
    topic_prefix: str = "metergw/v1"
    batch_size: int = Field(default=500, gt=0)


class LocalSinkConfig(Section):
    """``[sinks.local]``: readings kept queryable on the box (``metergw query``)."""

    enabled: bool = True
    retention: Duration = 7 * 86400.0


class SinksConfig(Section):
    """``[sinks]``: where readings are forwarded; each has its own cursor."""

    influx: InfluxSinkConfig | None = None
    mqtt: MqttSinkConfig | None = None
    local: LocalSinkConfig | None = None
