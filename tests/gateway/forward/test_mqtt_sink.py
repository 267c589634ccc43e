"""MQTT northbound sink against a real Mosquitto: batches, exact values, events, outages."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.buffer import Buffer
from gateway.config.northbound import BufferConfig, MqttBroker
from gateway.forward import Forwarder, MqttSink
from gateway.forward.mqtt import MqttSinkConfig
from gateway.metrics import Metrics
from tests.gateway.buffer.factory import event, reading
from tests.gateway.forward.conftest import sink_errors
from tests.servers import MosquittoServer

pytestmark = pytest.mark.asyncio


class Collector:
    """A northbound consumer: subscribes to the gateway's tree and keeps every message."""

    def __init__(self, server: MosquittoServer, client_id: str = "collector") -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.c.on_connect = lambda client, *_: client.subscribe("metergw/v1/#", qos=1)
        self.c.on_subscribe = lambda *_: self.ready.set()
        self.c.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, orjson.loads(m.payload))
        )
        self.c.connect(server.host, server.port)
        self.c.loop_start()
        assert self.ready.wait(10)

    def readings(self) -> list[dict[str, Any]]:
        return [r for t, body in self.messages if t.endswith("/readings") for r in body["readings"]]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def until(pred: Any, within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not pred():
        assert loop.time() < deadline, f"timed out waiting for {pred}"
        await asyncio.sleep(0.02)


async def test_readings_and_events_reach_the_topic_tree(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    collector = await asyncio.to_thread(Collector, mosquitto)
    metrics = Metrics()
    cfg = MqttSinkConfig(broker=MqttBroker(url=mosquitto.url), batch_size=40, flush_interval=0.02)
    buf = await Buffer.open(
        str(tmp_path / "b.sqlite"), BufferConfig(commit_interval=0.005), metrics
    )
    sink = MqttSink(cfg, gateway="gw-1")
    # The first retry after the outage comes >= 1.2 s later: time for a fresh subscriber.
    fw = Forwarder(buf, sink, metrics, retry_min=1.5, retry_max=1.5)
    task = asyncio.create_task(fw.run())
    try:
        await buf.accept([reading(i) for i in range(100)], [event(1)])
        await until(lambda: len(collector.readings()) == 100)
        await asyncio.to_thread(mosquitto.stop)  # northbound broker away: rows wait
        await buf.accept([reading(i) for i in range(100, 150)])
        await until(lambda: sink_errors(metrics, "mqtt", "connection") >= 1)
        await asyncio.to_thread(mosquitto.start)
        after = await asyncio.to_thread(Collector, mosquitto, "after-restart")
        await until(lambda: buf.stats().sinks["mqtt"].depth == 0, within=30)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sink.close()
        await buf.close()
    await until(lambda: len(after.readings()) == 50)
    after.close()
    collector.close()
    assert [r["seq"] for r in after.readings()] == list(range(102, 152))
    topics = {t for t, _ in collector.messages}
    assert topics == {"metergw/v1/gw-1/readings", "metergw/v1/gw-1/events"}
    sizes = [len(b["readings"]) for t, b in collector.messages if t.endswith("/readings")]
    assert max(sizes) == 40  # batched per message
    first = next(r for r in collector.readings() if r["seq"] == 1)
    assert first["value"] == "0.01"  # exact decimal text, never a float
    assert first["meter"] == "dlt645-2007:000000000001"
    assert first["quality"] == ["estimated"]  # reading 0 is flagged by the factory
    events = [e for t, b in collector.messages if t.endswith("/events") for e in b["events"]]
    assert [(e["kind"], e["detail"]) for e in events] == [("meter_offline", {"misses": 3})]
