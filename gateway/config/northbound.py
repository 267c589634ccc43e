"""Northbound sections: the buffer, concentrator ingest and the sinks."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from gateway.config.base import ConfigPath, Duration, Section


def _check_mqtt_url(url: str) -> str:
    if not url.startswith(("mqtt://", "mqtts://")):
        raise ValueError(f"{url!r} is not an MQTT URL (mqtt://host:port or mqtts://host:port)")
    return url


class BufferConfig(Section):
    """``[buffer]``: the durable SQLite store every reading passes through."""

    path: ConfigPath | None = None
    """Database file; defaults to ``{gateway.state_dir}/buffer.sqlite``."""
    max_bytes: int = Field(default=2 * 1024**3, gt=0)
    """Disk budget; past it the oldest rows are dropped, counted and alarmed."""
    commit_interval: Duration = 0.05
    """Longest a reading waits for its group commit (more waiting, fewer fsyncs)."""
    commit_max_rows: int = Field(default=5000, gt=0)
    """A group commits at once when this many rows are waiting."""


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
    topics: list[str] = Field(default_factory=lambda: ["meters/v1/+/readings"], min_length=1)
    """Subscriptions (QoS 1); each topic must have the form ``meters/v1/{gw}/readings``."""
    max_payload_bytes: int = Field(default=1024 * 1024, gt=0)
    """Larger messages are rejected and quarantined (truncated) without parsing."""


class InfluxSinkConfig(Section):
    """``[sinks.influx]``: InfluxDB v2 write API (or anything that speaks it)."""

    url: str
    token: SecretStr
    org: str
    bucket: str
    measurement: str = Field(default="meter", min_length=1)
    batch_size: int = Field(default=5000, gt=0)
    """Most points per write request."""
    flush_interval: Duration = 1.0
    """Longest a point waits for a fuller batch."""
    timeout: Duration = 10.0
    """HTTP timeout of one write."""


class MqttSinkConfig(Section):
    """``[sinks.mqtt]``: real-time readings to an MQTT topic tree at QoS 1."""

    broker: MqttBroker
    topic_prefix: str = "metergw/v1"
    """Readings go to ``{topic_prefix}/{gateway}/readings``, events to ``.../events``."""
    batch_size: int = Field(default=500, gt=0)
    """Readings per MQTT message."""
    flush_interval: Duration = 0.5
    """Longest a reading waits for a fuller message."""


class LocalSinkConfig(Section):
    """``[sinks.local]``: readings kept queryable on the box (``metergw query``)."""

    enabled: bool = True
    path: ConfigPath | None = None
    """Database file; defaults to ``{gateway.state_dir}/local.sqlite``."""
    retention: Duration = 7 * 86400.0
    """Readings older than this (by their own timestamp) are deleted."""
    batch_size: int = Field(default=5000, gt=0)
    flush_interval: Duration = 0.5


class SinksConfig(Section):
    """``[sinks]``: where readings are forwarded; each has its own cursor."""

    influx: InfluxSinkConfig | None = None
    mqtt: MqttSinkConfig | None = None
    local: LocalSinkConfig | None = None
