"""Northbound sections: the buffer, concentrator ingest and the sinks."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import AwareDatetime, Field, SecretStr, field_validator

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
    """Kept for older configs and ignored: the buffer commits on demand (as soon as it has
    work and the previous commit finished), so no reading waits for a timer."""
    commit_max_rows: int = Field(default=5000, gt=0)
    """Most rows in one group commit; more waiting rows commit in the next group."""


class MqttBroker(Section):
    """How to reach an MQTT broker."""

    url: str
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None
    keepalive: int = Field(default=30, ge=5)

    _url = field_validator("url")(_check_mqtt_url)


def _check_topic(topic: str) -> str:
    inner = topic
    if topic.startswith("$share/"):
        parts = topic.split("/", 2)
        if len(parts) < 3 or not parts[1]:
            raise ValueError(
                f"{topic!r}: a shared subscription is '$share/GROUP/meters/v1/+/readings'"
            )
        inner = parts[2]
    levels = inner.split("/")
    if len(levels) != 4 or levels[:2] != ["meters", "v1"] or levels[3] != "readings":
        raise ValueError(
            f"{topic!r} is not a readings topic: use 'meters/v1/+/readings', "
            "'meters/v1/GATEWAY/readings' or '$share/GROUP/meters/v1/+/readings'"
        )
    return topic


class IngestConfig(Section):
    """``[ingest]``: concentrator readings over MQTT."""

    broker: MqttBroker
    topics: list[str] = Field(default_factory=lambda: ["meters/v1/+/readings"], min_length=1)
    """Subscriptions (QoS 1), each ``meters/v1/{gw}/readings`` (``+`` for every concentrator),
    or a shared subscription ``$share/GROUP/meters/v1/+/readings`` when several gateways
    split the messages (then seq gaps cannot be seen by one of them and are not reported)."""
    max_payload_bytes: int = Field(default=1024 * 1024, gt=0)
    """Larger messages are rejected and quarantined (truncated) without parsing."""
    window_messages: int = Field(default=4096, ge=1, le=1_000_000)
    """Messages received but not yet committed, at most. Past it (or past ``window_bytes``)
    the MQTT client stops reading, TCP pushes back and the broker queues: set Mosquitto's
    ``max_queued_messages 0`` (or large) so that it does not drop messages for us, and
    ``max_inflight_messages`` to at least this for QoS 1 throughput."""
    window_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Payload bytes of the messages received but not yet committed, at most (a message
    larger than this is still taken, alone). The default lets a commit cycle take a
    gigabit link's worth of small messages while the decoded rows stay a few MB."""
    ts_min: AwareDatetime = datetime(2000, 1, 1, tzinfo=UTC)
    """Readings stamped before this are refused (quarantined with the reason)."""
    ts_max_ahead: Duration = 86400.0
    """Readings stamped more than this ahead of the gateway clock are refused."""

    _topics = field_validator("topics")(lambda topics: [_check_topic(t) for t in topics])

    @property
    def shared(self) -> bool:
        """Whether the subscription is shared with other gateways (seq gaps are not seen)."""
        return any(t.startswith("$share/") for t in self.topics)


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
    path: str | None = None
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
