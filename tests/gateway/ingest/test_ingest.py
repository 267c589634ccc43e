"""Concentrator ingest against a real Mosquitto: store, ack, reject, reconnect."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.buffer import Buffer
from gateway.config.northbound import BufferConfig, IngestConfig, MqttBroker
from gateway.ingest import ConcentratorIngest
from gateway.metrics import Metrics
from tests.disk import small_disk
from tests.gateway.ingest.payloads import batch, encode
from tests.integration.helpers import Publisher
from tests.servers import MosquittoServer

pytestmark = pytest.mark.asyncio
TOPIC = "meters/v1/c1/readings"


async def until(pred: Callable[[], bool], within: float = 15.0, what: str = "") -> None:
    """Poll ``pred`` on the event loop until true (fail after ``within`` seconds)."""
    deadline = asyncio.get_running_loop().time() + within
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(
    tmp_path: Path, broker: MosquittoServer, metrics: Metrics
) -> AsyncIterator[tuple[Buffer, ConcentratorIngest]]:
    cfg = IngestConfig(broker=MqttBroker(url=broker.url, client_id="gw-ingest-test"))
    buf = await Buffer.open(str(tmp_path / "b.sqlite"), BufferConfig(commit_interval=0.01), metrics)
    ing = ConcentratorIngest(cfg, buf, metrics, gateway_name="gw")
    task = asyncio.create_task(ing.run())
    try:
        await until(lambda: ing.connected, what="ingest connected")
        yield buf, ing
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await buf.close()


async def test_messages_are_stored_once_and_not_redelivered(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    metrics = Metrics()
    with Publisher(mosquitto.host, mosquitto.port) as pub:
        async with running(tmp_path, mosquitto, metrics) as (buf, ing):
            await asyncio.to_thread(
                pub.publish_many, [(TOPIC, encode(batch(seq=s))) for s in range(1, 21)]
            )
            await until(lambda: buf.stats().rows == 80, what="80 readings")
            await asyncio.to_thread(pub.publish, TOPIC, encode(batch(seq=20)))  # a resend
            await until(lambda: ing.duplicates == 1, what="the resend")
            # The resend left a trace: an event (a row of its own) and a counter.
            await until(lambda: buf.stats().rows == 81, what="the repeat's event")
            events = (await buf.read("s", 0, 1000)).events
            assert [(e[1], e[3]) for e in events] == [("message_repeated", "c1")]
        # Same client id again: every message was acked, so nothing comes back.
        async with running(tmp_path, mosquitto, metrics) as (buf, ing):
            assert buf.stats().repeats == 1  # kept in the buffer across restarts
            await asyncio.to_thread(pub.publish, TOPIC, encode(batch(seq=21)))
            await until(lambda: buf.stats().rows == 85, what="the new message")
            assert ing.received == 1
    assert (
        metrics.registry.get_sample_value(
            "metergw_readings_accepted_total", {"origin": "concentrator"}
        )
        == 84
    )


async def test_bad_payloads_are_quarantined_and_good_ones_still_flow(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    metrics = Metrics()
    huge = encode(batch(meters=3000, points=8))
    bad = [
        b"{not json",
        encode({**batch(), "schema": "other/1"}),
        encode({**batch(), "seq": "x"}),
        b'{"schema":"metergw.readings/1","gw":"c1","seq":1,"ts":"2026-11-23T10:00:00Z",'
        b'"readings":[{"meter":{"addr":"1","proto":"dlt645-2007"},'
        b'"ts":"2026-11-23T10:00:00Z","points":[{"key":"voltage_l1_v","v":NaN}]}]}',
        encode(batch(gw="c2")),
        huge,
    ]
    assert len(huge) > 1024 * 1024
    with Publisher(mosquitto.host, mosquitto.port) as pub:
        async with running(tmp_path, mosquitto, metrics) as (buf, ing):
            await asyncio.to_thread(pub.publish_many, [(TOPIC, p) for p in bad])
            await asyncio.to_thread(pub.publish, TOPIC, encode(batch(seq=7)))
            await until(lambda: buf.stats().rows == 4 + len(bad), what="good readings + events")
            assert ing.rejected == len(bad)
            assert buf.stats().quarantined == len(bad)
    rejected = sum(
        metrics.registry.get_sample_value("metergw_payloads_rejected_total", {"reason": r}) or 0
        for r in ("json", "schema", "topic", "too_large", "bounds")
    )
    assert rejected == len(bad)
    with sqlite3.connect(tmp_path / "b.sqlite") as conn:
        rows = conn.execute(
            "SELECT origin, subject, reason, length(payload) FROM quarantine"
        ).fetchall()
        kinds = [k for (k,) in conn.execute("SELECT kind FROM events")]
    assert {r[0] for r in rows} == {"ingest"}
    assert {r[1] for r in rows} == {TOPIC}
    assert any("exceeds max_payload_bytes" in r[2] for r in rows)
    assert any("does not match the topic" in r[2] for r in rows)
    assert max(r[3] for r in rows) == 64 * 1024  # a huge payload is kept truncated
    assert kinds.count("payload_rejected") == len(bad)


async def test_broker_restart_loses_nothing(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    metrics = Metrics()
    async with running(tmp_path, mosquitto, metrics) as (buf, ing):
        with Publisher(mosquitto.host, mosquitto.port) as pub:
            await asyncio.to_thread(
                pub.publish_many, [(TOPIC, encode(batch(seq=s))) for s in range(1, 11)]
            )
        await until(lambda: buf.stats().rows == 40, what="first 10 messages")
        await asyncio.to_thread(mosquitto.stop)
        await until(lambda: not ing.connected, what="ingest to notice")
        await asyncio.to_thread(mosquitto.start)
        await until(lambda: ing.connected, within=40, what="ingest to reconnect")
        with Publisher(mosquitto.host, mosquitto.port) as pub:
            await asyncio.to_thread(
                pub.publish_many, [(TOPIC, encode(batch(seq=s))) for s in range(11, 21)]
            )
        # The broker keeps its sessions (persistence): a message whose PUBACK had not reached
        # it when it stopped comes again after the restart, and is a repeat, stored once.
        await until(lambda: buf.stats().rows - buf.stats().repeats == 80, what="all 20 messages")
        batch_ = await buf.read("check", 0, 1000)
        repeats = buf.stats().repeats
        assert ing.duplicates == repeats
    assert {e[1] for e in batch_.events} <= {"message_repeated"}  # no gap
    assert len(batch_.events) == repeats
    assert len(batch_.readings) == 80


async def test_seq_gap_is_recorded(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    async with running(tmp_path, mosquitto, Metrics()) as (buf, _ing):
        with Publisher(mosquitto.host, mosquitto.port) as pub:
            await asyncio.to_thread(
                pub.publish_many, [(TOPIC, encode(batch(seq=s))) for s in (1, 2, 6)]
            )
        await until(lambda: buf.stats().rows == 13, what="readings and the gap event")
        b = await buf.read("check", 0, 100)
    assert [(e[1], e[3], e[4]) for e in b.events] == [("network_gap", "c1", "missing seq 3..5")]


async def test_full_disk_holds_messages_unacked_then_stores_them_in_order(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    async with small_disk(tmp_path / "small") as mnt:
        metrics = Metrics()
        cfg = IngestConfig(broker=MqttBroker(url=mosquitto.url, client_id="gw-full-disk"))
        buf = await Buffer.open(str(mnt / "b.sqlite"), BufferConfig(commit_interval=0.01), metrics)
        ing = ConcentratorIngest(cfg, buf, metrics, gateway_name="gw")
        task = asyncio.create_task(ing.run())
        try:
            await until(lambda: ing.connected, what="ingest connected")
            filler = mnt / "filler"
            st = os.statvfs(mnt)
            filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 32 * 1024))
            big = [
                (TOPIC, encode(batch(seq=s, meters=50, points=8, base=s * 50)))
                for s in range(1, 41)
            ]
            with Publisher(mosquitto.host, mosquitto.port) as pub:
                await asyncio.to_thread(pub.publish_many, big)
            await until(lambda: not buf.healthy, what="a failed commit")
            assert ing.received >= 1
            filler.unlink()  # space comes back; the held messages go in, in order
            await until(lambda: buf.stats().rows == 40 * 400, within=30, what="all readings")
            assert buf.healthy
            assert ing.duplicates == 0
            b = await buf.read("check", 0, 20_000)
            assert not b.events  # no gap: every message stored, in seq order
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await buf.close()
