"""Sinks over TLS and with credentials: the MQTT sink to Mosquitto with a client certificate
or a password, the InfluxDB sink to VictoriaMetrics over HTTPS; refusals make /readyz fail."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import logs
from gateway.buffer import Batch, Buffer
from gateway.config.northbound import BufferConfig, MqttBroker
from gateway.config.security import TlsConfig
from gateway.forward import Forwarder, InfluxSink, MqttSink, SinkAuthError, SinkUnavailable
from gateway.forward.influx import InfluxSinkConfig
from gateway.forward.mqtt import MqttSinkConfig
from gateway.metrics import Metrics
from gateway.status import RecentEvents, StatusModel
from tests.certs import CertFiles, CertificateAuthority
from tests.gateway.buffer.factory import reading
from tests.gateway.forward.conftest import WriteServer
from tests.servers import MosquittoServer, VictoriaMetricsServer

pytestmark = pytest.mark.asyncio
SECRET = "n0rth-Pa55"


async def until(pred: Callable[[], bool], within: float = 20.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not pred():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


@pytest.fixture
def pki(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki")


class TlsCollector:
    """A northbound consumer over TLS with its own client certificate."""

    def __init__(self, server: MosquittoServer, ca: Path, files: CertFiles) -> None:
        self.readings: list[dict[str, Any]] = []
        ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-collector")
        self.c.tls_set(ca_certs=str(ca), certfile=str(files.cert), keyfile=str(files.key))
        self.c.on_connect = lambda client, *_: client.subscribe("metergw/v1/#", qos=1)
        self.c.on_subscribe = lambda *_: ready.set()
        self.c.on_message = lambda _c, _u, m: self.readings.extend(
            orjson.loads(m.payload).get("readings", [])
        )
        self.c.connect(server.host, server.port)
        self.c.loop_start()
        assert ready.wait(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def one_batch(tmp_path: Path) -> Batch:
    """A batch of one reading, as the forwarder reads it from the buffer."""
    buf = await Buffer.open(str(tmp_path / "one.sqlite"), BufferConfig(), Metrics())
    try:
        await buf.accept([reading(0)])
        return await buf.read("any", 0, 10)
    finally:
        await buf.close()


class SinkStatus:
    """What /readyz says about one sink (the rest of the gateway is not running here)."""

    def __init__(self, sink: Any) -> None:
        self.model = StatusModel("gw", Metrics(), RecentEvents(10))
        self.model.sink_parts = [sink]

    def readiness(self) -> list[str]:
        return [r for r in self.model.readiness() if r.startswith("sink ")]

    def snapshot(self) -> dict[str, Any]:
        return self.model.snapshot()


def status_with(sink: Any) -> SinkStatus:
    return SinkStatus(sink)


async def test_mqtt_sink_publishes_over_tls_with_a_client_certificate(
    tmp_path: Path, start_mosquitto: Callable[..., MosquittoServer], pki: CertificateAuthority
) -> None:
    server = start_mosquitto(tls=pki.server(), ca_file=pki.cert, require_certificate=True)
    collector = await asyncio.to_thread(TlsCollector, server, pki.cert, pki.client("consumer"))
    gw = pki.client("metergw-northbound")
    tls = TlsConfig(ca_file=str(pki.cert), cert_file=str(gw.cert), key_file=str(gw.key))
    cfg = MqttSinkConfig(broker=MqttBroker(url=server.url, tls=tls), flush_interval=0.02)
    metrics = Metrics()
    buf = await Buffer.open(str(tmp_path / "b.sqlite"), BufferConfig(commit_interval=0.01), metrics)
    sink = MqttSink(cfg, gateway="gw-1")
    task = asyncio.create_task(Forwarder(buf, sink, metrics).run())
    try:
        await buf.accept([reading(i) for i in range(20)])
        await until(lambda: len(collector.readings) == 20, what="20 readings over TLS")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sink.close()
        await buf.close()
        collector.close()
    assert sink.refused is None
    assert [r["seq"] for r in collector.readings] == list(range(1, 21))


async def test_mqtt_sink_refused_login_is_an_alarm_and_a_readiness_reason(
    tmp_path: Path, start_mosquitto: Callable[..., MosquittoServer]
) -> None:
    server = start_mosquitto(passwords={"north": "the-right-one"})
    url = f"mqtt://north:{SECRET}@127.0.0.1:{server.port}"
    sink = MqttSink(MqttSinkConfig(broker=MqttBroker(url=url)), gateway="gw-1")
    status = status_with(sink)
    batch = await one_batch(tmp_path)
    with pytest.raises(SinkAuthError) as info:
        await sink.write(batch)
    expected = f"broker {server.url} refused the login (user 'north'): [code:135] Not authorized"
    assert str(info.value) == expected
    assert status.readiness() == [f"sink mqtt: {expected}"]
    assert SECRET not in str(status.snapshot())

    await asyncio.to_thread(server.stop)
    server.passwords = {"north": SECRET}
    await asyncio.to_thread(server.start)
    assert (await sink.write(batch)).accepted == 1
    assert status.readiness() == []
    await sink.close()


async def test_mqtt_sink_with_a_wrong_ca_names_the_tls_failure(
    start_mosquitto: Callable[..., MosquittoServer], pki: CertificateAuthority, tmp_path: Path
) -> None:
    server = start_mosquitto(tls=pki.server(), ca_file=pki.cert)
    other = CertificateAuthority(tmp_path / "other", name="another CA")
    cfg = MqttSinkConfig(broker=MqttBroker(url=server.url, tls=TlsConfig(ca_file=str(other.cert))))
    sink = MqttSink(cfg, gateway="gw-1")
    with pytest.raises(SinkUnavailable) as info:
        await sink.write(await one_batch(tmp_path))
    assert info.value.kind == "tls"
    assert str(info.value).startswith(
        f"broker {server.url}: TLS: the server's certificate is not trusted: "
    )
    assert status_with(sink).readiness() == [f"sink mqtt: {info.value}"]


def influx_config(url: str, **kw: Any) -> InfluxSinkConfig:
    base: dict[str, Any] = {"url": url, "token": "t", "org": "o", "bucket": "b"}
    base.update(batch_size=200, flush_interval=0.02, timeout=3.0)
    return InfluxSinkConfig.model_validate(base | kw)


async def test_influx_sink_writes_over_https_with_a_ca_file(
    tmp_path: Path,
    start_victoria_metrics: Callable[..., VictoriaMetricsServer],
    pki: CertificateAuthority,
) -> None:
    vm = start_victoria_metrics(tls=pki.server(), ca_file=pki.cert)
    assert vm.url.startswith("https://")
    metrics = Metrics()
    cfg = influx_config(vm.url, tls={"ca_file": str(pki.cert)})
    buf = await Buffer.open(str(tmp_path / "b.sqlite"), BufferConfig(commit_interval=0.01), metrics)
    sink = InfluxSink(cfg, metrics)
    fw = Forwarder(buf, sink, metrics, retry_min=0.05, retry_max=0.3)
    task = asyncio.create_task(fw.run())
    try:
        await buf.accept([reading(i) for i in range(50)])
        await until(lambda: fw.delivered == 50, what="50 points over HTTPS")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sink.close()
        await buf.close()
    assert await asyncio.to_thread(vm.samples, '{__name__="meter_value"}') == 50
    assert sink.refused is None


async def test_influx_sink_with_a_wrong_ca_names_the_tls_failure(
    tmp_path: Path,
    start_victoria_metrics: Callable[..., VictoriaMetricsServer],
    pki: CertificateAuthority,
) -> None:
    vm = start_victoria_metrics(tls=pki.server(), ca_file=pki.cert)
    other = CertificateAuthority(tmp_path / "other", name="another CA")
    sink = InfluxSink(influx_config(vm.url, tls={"ca_file": str(other.cert)}), Metrics())
    try:
        with pytest.raises(SinkUnavailable) as info:
            await sink.write(await one_batch(tmp_path))
    finally:
        await sink.close()
    assert info.value.kind == "tls"
    assert str(info.value).startswith(f"{vm.url}: TLS: the server's certificate is not trusted: ")
    assert status_with(sink).readiness() == [f"sink influx: {info.value}"]


async def test_influx_sink_refused_token_is_a_readiness_reason_until_a_write_passes(
    tmp_path: Path, write_server: WriteServer
) -> None:
    sink = InfluxSink(influx_config(write_server.url, token=SECRET), Metrics())
    status = status_with(sink)
    write_server.auth_ok = False
    try:
        batch = await one_batch(tmp_path)
        with pytest.raises(SinkAuthError):
            await sink.write(batch)
        (reason,) = status.readiness()
        assert reason.startswith(f"sink influx: {write_server.url} refused the token: HTTP 401")
        assert SECRET not in reason
        write_server.auth_ok = True
        assert (await sink.write(batch)).accepted == 1
        assert status.readiness() == []
    finally:
        await sink.close()


async def test_insecure_sinks_skip_verification_with_a_warning(
    tmp_path: Path,
    start_victoria_metrics: Callable[..., VictoriaMetricsServer],
    start_mosquitto: Callable[..., MosquittoServer],
    pki: CertificateAuthority,
) -> None:
    vm = start_victoria_metrics(tls=pki.server(), ca_file=pki.cert)
    broker = start_mosquitto(tls=pki.server(), ca_file=pki.cert)
    batch = await one_batch(tmp_path)
    insecure = TlsConfig(insecure=True)  # neither server's CA is known to the sinks
    stream = io.StringIO()
    logs.configure("info", "json", stream=stream)
    try:
        influx = InfluxSink(influx_config(vm.url, tls=insecure), Metrics())
        mqtt_sink = MqttSink(MqttSinkConfig(broker=MqttBroker(url=broker.url, tls=insecure)), "gw")
    finally:
        logs.configure("info", "auto", stream=sys.stderr)
    try:
        assert (await influx.write(batch)).accepted == 1
        assert (await mqtt_sink.write(batch)).accepted == 1
    finally:
        await influx.close()
        await mqtt_sink.close()
    warned = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["event"], e["level"], e["part"]) for e in warned] == [
        ("tls_verification_disabled", "warning", "sink influx"),
        ("tls_verification_disabled", "warning", "sink mqtt"),
    ]
