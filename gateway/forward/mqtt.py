"""MQTT northbound sink: readings as JSON to a topic tree, QoS 1.

Readings are batched per message (up to ``batch_size`` readings) on
``{topic_prefix}/{gateway}/readings``; events go to
``{topic_prefix}/{gateway}/events``. One message per reading would cost a
broker round trip per reading (Mosquitto manages ~10-17k QoS 1 messages/s),
and consumers of a gateway's stream want batches anyway. Values are the exact
decimal text (a JSON string), so billing never sees a float. aiomqtt's
``publish`` returns after the broker's PUBACK; the cursor moves only then.

Payload: ``{"schema": "metergw.northbound/1", "gateway": ..., "readings":
[{"seq", "meter", "key", "value", "unit", "ts_ms", "ts_source", "received_ms",
"source", "quality": [flag names], "interval_s"}]}`` (``events`` likewise).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Self
from urllib.parse import urlsplit

import aiomqtt
import orjson
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import Field

from gateway.buffer import Batch
from gateway.buffer.rows import EVENT_COLUMNS, READING_COLUMNS
from gateway.config.base import Duration
from gateway.config.model import Config
from gateway.config.northbound import MqttBroker, SinkSection
from gateway.config.security import client_ssl_context
from gateway.forward.sink import SinkAuthError, SinkUnavailable, WriteResult
from gateway.ingest.login import BROKER_BUSY, describe_connect_error
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.model import Quality

log = get_logger("forward")

NORTHBOUND_SCHEMA = "metergw.northbound/1"


class MqttSinkConfig(SinkSection):
    """``[sinks.mqtt]``: real-time readings to an MQTT topic tree at QoS 1."""

    broker: MqttBroker
    topic_prefix: str = "metergw/v1"
    """Readings go to ``{topic_prefix}/{gateway}/readings``, events to ``.../events``."""
    batch_size: int = Field(default=500, gt=0)
    """Readings per MQTT message."""
    flush_interval: Duration = 0.5
    """Longest a reading waits for a fuller message."""


class MqttSink:
    """Publishes batches to the northbound broker and waits for each PUBACK."""

    def __init__(self, config: MqttSinkConfig, gateway: str, name: str = "mqtt") -> None:
        self.name = name
        self.batch_size = config.batch_size * 8
        self.flush_interval = config.flush_interval
        self._per_message = config.batch_size
        self._config = config
        self._gateway = gateway
        self._topic = f"{config.topic_prefix.rstrip('/')}/{gateway}"
        self._client: aiomqtt.Client | None = None
        self._quality: dict[int, list[str]] = {}
        self.refused: str | None = None
        """Why the broker does not let us in (login refused, TLS failed), for ``/readyz``."""
        b = config.broker
        if b.uses_tls and b.tls is not None and b.tls.insecure:
            log.warning("tls_verification_disabled", broker=b.url, part=f"sink {name}")

    @classmethod
    def from_config(cls, section: MqttSinkConfig, config: Config, metrics: Metrics) -> Self:
        """The sink of a ``[sinks.mqtt]`` section (topics under the gateway's name)."""
        return cls(section, config.gateway.name)

    async def _connect(self) -> aiomqtt.Client:
        if self._client is not None:
            return self._client
        b = self._config.broker
        url = urlsplit(b.url)  # validation took any credentials out of it
        client = aiomqtt.Client(
            url.hostname or "localhost",
            url.port or (8883 if b.uses_tls else 1883),
            username=b.username,
            password=b.password.get_secret_value() if b.password else None,
            identifier=b.client_id or f"metergw-{self._gateway}-northbound",
            keepalive=b.keepalive,
            tls_context=client_ssl_context(b.tls) if b.uses_tls else None,
            timeout=10.0,
        )
        try:
            await client.__aenter__()
        except MqttConnectError as exc:  # CONNACK with a refusal
            code = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
            if code in BROKER_BUSY:
                raise SinkUnavailable(f"{b.url}: {exc}", None, "connection") from None
            self.refused = f"broker {b.url} refused the login (user {b.username!r}): {exc}"
            raise SinkAuthError(self.refused) from None
        except aiomqtt.MqttError as exc:
            # aiomqtt raises ``MqttError(str(error))`` from None: the error is the context.
            cause = exc.__context__
            if isinstance(cause, ssl.SSLError):
                self.refused = f"broker {b.url}: {describe_connect_error(cause)}"
                raise SinkUnavailable(self.refused, None, "tls") from None
            raise SinkUnavailable(f"{b.url}: {exc}", None, "connection") from None
        self.refused = None
        self._client = client
        return client

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                log.debug("northbound_close_failed", broker=self._config.broker.url)

    def _reading(self, row: tuple[Any, ...]) -> dict[str, Any]:
        d = dict(zip(READING_COLUMNS, row, strict=True))
        bits = d["quality"]
        names = self._quality.get(bits)
        if names is None:
            names = self._quality[bits] = Quality(bits).names()
        d["quality"] = names
        return d

    async def write(self, batch: Batch) -> WriteResult:
        """Publish the batch in messages of ``batch_size`` readings; return after every PUBACK."""
        client = await self._connect()
        messages: list[tuple[str, bytes]] = []
        n = self._per_message
        for i in range(0, len(batch.readings), n):
            part = [self._reading(r) for r in batch.readings[i : i + n]]
            body = {"schema": NORTHBOUND_SCHEMA, "gateway": self._gateway, "readings": part}
            messages.append((f"{self._topic}/readings", orjson.dumps(body)))
        if batch.events:
            events = []
            for row in batch.events:
                e = dict(zip(EVENT_COLUMNS, row, strict=True))
                e["detail"] = orjson.Fragment(row[5])  # stored as JSON already
                events.append(e)
            body = {"schema": NORTHBOUND_SCHEMA, "gateway": self._gateway, "events": events}
            messages.append((f"{self._topic}/events", orjson.dumps(body)))
        try:
            await asyncio.gather(*(client.publish(t, p, qos=1, timeout=30) for t, p in messages))
        except aiomqtt.MqttError as exc:
            await self._drop()
            raise SinkUnavailable(f"{self._config.broker.url}: {exc}", None, "connection") from None
        return WriteResult(len(batch))

    async def close(self) -> None:
        """Disconnect."""
        await self._drop()
