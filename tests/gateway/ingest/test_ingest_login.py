"""Ingest over TLS and with passwords, against real Mosquitto brokers: a client certificate
gets in, a wrong CA or a wrong password is an error in the log, an event and a /readyz
reason (once per streak, not per reconnect attempt), and clears once a login succeeds."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import logs
from gateway.buffer import Buffer
from gateway.config.northbound import BufferConfig, IngestConfig, MqttBroker
from gateway.config.security import TlsConfig
from gateway.ingest import ConcentratorIngest
from gateway.metrics import Metrics
from gateway.status import RecentEvents, StatusModel
from tests.certs import CertFiles, CertificateAuthority
from tests.gateway.ingest.payloads import batch, encode
from tests.servers import MosquittoServer

pytestmark = pytest.mark.asyncio
TOPIC = "meters/v1/c1/readings"
SECRET = "wrong-Pa55word"


async def until(pred: Callable[[], bool], within: float = 15.0, what: str = "") -> None:
    """Poll ``pred`` on the event loop until true (fail after ``within`` seconds)."""
    deadline = asyncio.get_running_loop().time() + within
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


@pytest.fixture
def json_logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every log line of the test (debug and up), parsed."""
    stream = io.StringIO()
    logs.configure("debug", "json", stream=stream)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logs.configure("info", "auto", stream=sys.stderr)


@pytest.fixture
def pki(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki")


def publish(server: MosquittoServer, payload: bytes, **login: Any) -> None:
    """Publish one QoS 1 message as a concentrator would (``tls``: CertFiles + ca)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-concentrator")
    if "tls" in login:
        files: CertFiles = login["tls"]
        c.tls_set(ca_certs=str(login["ca"]), certfile=str(files.cert), keyfile=str(files.key))
    if "username" in login:
        c.username_pw_set(login["username"], login["password"])
    c.connect(server.host, server.port)
    c.loop_start()
    try:
        info = c.publish(TOPIC, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


@asynccontextmanager
async def ingesting(
    tmp_path: Path, broker: MqttBroker
) -> AsyncIterator[tuple[Buffer, ConcentratorIngest, StatusModel]]:
    metrics = Metrics()
    buf = await Buffer.open(str(tmp_path / "b.sqlite"), BufferConfig(commit_interval=0.01), metrics)
    ing = ConcentratorIngest(IngestConfig(broker=broker), buf, metrics, gateway_name="gw")
    status = StatusModel("gw", metrics, RecentEvents(10))
    status.buffer = buf
    status.ingest = ing
    task = asyncio.create_task(ing.run())
    try:
        yield buf, ing, status
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await buf.close()


async def test_a_client_certificate_gets_in_and_a_message_is_stored(
    tmp_path: Path, start_mosquitto: Callable[..., MosquittoServer], pki: CertificateAuthority
) -> None:
    server = start_mosquitto(tls=pki.server(), ca_file=pki.cert, require_certificate=True)
    assert server.url.startswith("mqtts://")
    gw = pki.client("metergw-ingest")
    broker = MqttBroker(
        url=server.url,
        client_id="gw-tls",
        tls=TlsConfig(ca_file=str(pki.cert), cert_file=str(gw.cert), key_file=str(gw.key)),
    )
    async with ingesting(tmp_path, broker) as (buf, ing, status):
        await until(lambda: ing.connected, what="ingest connected over TLS")
        await asyncio.to_thread(
            publish, server, encode(batch(seq=1)), tls=pki.client("concentrator"), ca=pki.cert
        )
        await until(lambda: buf.stats().rows == 4, what="the message's 4 readings")
        assert ing.refused is None
        assert status.readiness() == []


async def test_without_a_client_certificate_the_broker_lets_nobody_in(
    tmp_path: Path, start_mosquitto: Callable[..., MosquittoServer], pki: CertificateAuthority
) -> None:
    server = start_mosquitto(tls=pki.server(), ca_file=pki.cert, require_certificate=True)
    broker = MqttBroker(url=server.url, tls=TlsConfig(ca_file=str(pki.cert)))
    async with ingesting(tmp_path, broker) as (_buf, ing, status):
        await until(lambda: ing.refused is not None, what="the refusal")
        assert not ing.connected
        assert status.readiness() == [
            f"ingest: broker {server.url}: the broker closed the connection before answering "
            "the login; brokers that require a client certificate do this: set tls.cert_file"
        ]


async def test_a_wrong_ca_fails_with_a_clear_error(
    tmp_path: Path,
    start_mosquitto: Callable[..., MosquittoServer],
    pki: CertificateAuthority,
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    server = start_mosquitto(tls=pki.server(), ca_file=pki.cert)
    other = CertificateAuthority(tmp_path / "other", name="another CA")
    broker = MqttBroker(url=server.url, tls=TlsConfig(ca_file=str(other.cert)))
    async with ingesting(tmp_path, broker) as (_buf, ing, status):
        await until(lambda: ing.refused is not None, what="the TLS failure")
        # OpenSSL's words for it depend on whether the broker sends its CA along.
        prefix = f"broker {server.url}: TLS: the server's certificate is not trusted: "
        assert ing.refused.startswith(prefix)
        reason = ing.refused.removeprefix(f"broker {server.url}: ")
        assert "certificate" in reason.removeprefix(prefix)
        assert status.readiness() == [f"ingest: {ing.refused}"]
        errors = [e for e in json_logs() if e["level"] == "error"]
        assert errors == [
            {**errors[0], "event": "ingest_connect_failed", "broker": server.url, "reason": reason}
        ]


async def test_insecure_skips_verification_with_a_warning(
    tmp_path: Path,
    start_mosquitto: Callable[..., MosquittoServer],
    pki: CertificateAuthority,
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    server = start_mosquitto(tls=pki.server(), ca_file=pki.cert)
    broker = MqttBroker(url=server.url, tls=TlsConfig(insecure=True))  # CA unknown to us
    async with ingesting(tmp_path, broker) as (_buf, ing, _status):
        await until(lambda: ing.connected, what="ingest connected without verifying")
    warnings = [e["event"] for e in json_logs() if e["level"] == "warning"]
    assert "tls_verification_disabled" in warnings


async def test_a_wrong_password_is_logged_raised_as_one_event_and_fails_readiness(
    tmp_path: Path,
    start_mosquitto: Callable[..., MosquittoServer],
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    server = start_mosquitto(passwords={"gw": "right-password"})
    # The credentials are in the URL: they must be used to log in, and never shown.
    broker = MqttBroker(url=f"mqtt://gw:{SECRET}@127.0.0.1:{server.port}", client_id="gw-pw")
    assert broker.url == server.url
    async with ingesting(tmp_path, broker) as (buf, ing, status):
        refusals = lambda: [e for e in json_logs() if e["event"] == "ingest_login_refused"]  # noqa: E731
        # Two attempts refused (paho retries after 1 s, then 2 s): said once at error level.
        await until(lambda: len(refusals()) >= 2, what="two refused attempts")
        first, second = refusals()[:2]
        assert first["level"] == "error"
        assert first["broker"] == server.url
        assert first["username"] == "gw"
        assert first["reason"] == "Not authorized"
        assert second["level"] == "debug"
        expected = f"broker {server.url} refused the login (user 'gw'): Not authorized"
        assert status.readiness() == [f"ingest: {expected}"]
        assert status.snapshot()["ingest"] == {"connected": False, "refused": expected}
        events = (await buf.read("check", 0, 100)).events
        assert [(e[1], e[3], e[4]) for e in events] == [
            ("ingest_login_refused", server.url, "Not authorized")
        ]

        # The operator fixes the broker's side: the next attempt gets in, readiness clears.
        await asyncio.to_thread(server.stop)
        server.passwords = {"gw": SECRET}
        await asyncio.to_thread(server.start)
        await until(lambda: ing.connected, within=40, what="the login to succeed")
        assert ing.refused is None
        assert status.readiness() == []
        await asyncio.to_thread(
            publish, server, encode(batch(seq=1)), username="gw", password=SECRET
        )
        await until(lambda: buf.stats().rows == 4 + 1, what="the readings after the event")
    lines = json_logs()
    assert "ingest_login_accepted" in [e["event"] for e in lines]
    assert all(SECRET not in json.dumps(e) for e in lines)
