"""Concentrator messages as an attacker or a buggy device sends them, through a real broker.

Each test is one finding of the untrusted-input review: a single message used to poison
the buffer, block the ingest window, or make later real data vanish as "repeats".
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.buffer import Buffer
from gateway.config.northbound import BufferConfig, IngestConfig, MqttBroker
from gateway.ingest import ConcentratorIngest
from gateway.metrics import Metrics
from tests.gateway.ingest.payloads import batch, encode
from tests.integration.helpers import Publisher, prepare_session
from tests.servers import MosquittoServer

TOPIC = "meters/v1/c1/readings"
_ids = itertools.count()


def raw(obj: Any) -> bytes:
    """JSON as a device may write it: integers of any size (orjson stops at 64 bits)."""
    return json.dumps(obj).encode()


async def until(pred: Any, within: float = 15.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def ingesting(
    path: Path, broker: MosquittoServer, *, topic: str = "meters/v1/+/readings", client: str = ""
) -> AsyncIterator[tuple[Buffer, ConcentratorIngest, Metrics]]:
    metrics = Metrics()
    client = client or f"gw-hostile-{next(_ids)}"
    # The session and its subscription exist before anything is published, as after the
    # gateway's first start: a message published before the SUBACK would have no queue.
    await asyncio.to_thread(prepare_session, broker.host, broker.port, client, topic)
    cfg = IngestConfig(broker=MqttBroker(url=broker.url, client_id=client), topics=[topic])
    buf = await Buffer.open(str(path), BufferConfig(), metrics)
    ing = ConcentratorIngest(cfg, buf, metrics, gateway_name="gw", marks=buf.marks())
    task = asyncio.create_task(ing.run())
    try:
        await until(lambda: ing.connected, what="ingest connected")
        yield buf, ing, metrics
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await buf.close()


def stamped(body: dict[str, Any], when: datetime) -> dict[str, Any]:
    """``body`` with its batch time and every reading's time set to ``when``."""
    text = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**body, "ts": text, "readings": [{**r, "ts": text} for r in body["readings"]]}


def events(buf_path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(buf_path) as conn:
        return conn.execute("SELECT kind, subject, reason FROM events ORDER BY seq").fetchall()


def readings(buf_path: Path) -> list[tuple[str, str, str, int]]:
    with sqlite3.connect(buf_path) as conn:
        return conn.execute("SELECT meter, key, value, ts_ms FROM readings ORDER BY seq").fetchall()


@pytest.mark.asyncio
async def test_a_seq_beyond_64_bits_is_refused_and_the_buffer_takes_later_messages(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    path = tmp_path / "b.sqlite"
    with Publisher(mosquitto.host, mosquitto.port) as pub:
        async with ingesting(path, mosquitto, client="gw-seq") as (buf, ing, _):
            poison = {**batch(seq=1), "seq": 10**30}
            await asyncio.to_thread(pub.publish, TOPIC, raw(poison))
            await asyncio.to_thread(pub.publish, TOPIC, encode(batch(seq=2, base=10)))
            await until(lambda: ing.rejected == 1 and buf.stats().rows >= 5, what="both messages")
            assert buf.healthy
        # After a restart the broker has nothing to send again: both were acknowledged.
        async with ingesting(path, mosquitto, client="gw-seq") as (buf, ing, _):
            await asyncio.to_thread(pub.publish, TOPIC, encode(batch(seq=3, base=20)))
            await until(lambda: buf.stats().rows >= 9, what="the next message")
            assert ing.received == 1
    kinds = [k for k, _, _ in events(path)]
    assert kinds == ["payload_rejected"]
    assert len(readings(path)) == 8


@pytest.mark.asyncio
async def test_values_that_would_explode_are_refused_and_never_block_the_window(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    path = tmp_path / "b.sqlite"
    bombs = ["9E+999999999999999999", "1e999999999", "1e-999999999", "0E-999999999999"]
    bad = []
    for n in range(300):  # far more than a window of 96 messages used to hold
        body = batch(seq=n + 1)
        body["readings"][0]["points"][0]["v"] = bombs[n % len(bombs)]
        bad.append((TOPIC, encode(body)))
    with Publisher(mosquitto.host, mosquitto.port) as pub:
        async with ingesting(path, mosquitto) as (_buf, ing, metrics):
            await asyncio.to_thread(pub.publish_many, bad)
            await asyncio.to_thread(pub.publish, TOPIC, encode(batch(seq=1000, base=50)))
            await until(lambda: ing.received == 301, 30, "every message")
            await until(lambda: ing._window.messages == 0, what="the window to empty")
            assert metrics.registry.get_sample_value("metergw_ingest_window_messages") is not None
    stored = readings(path)
    # "0E-999999999999" is zero, not a bomb: those messages are stored, as plain "0".
    zeros = [r for r in stored if r[2] == "0"]
    assert len(zeros) == 300 // len(bombs)
    assert ing.rejected == 300 - len(zeros)
    assert all(len(r[2]) <= 32 for r in stored)


@pytest.mark.asyncio
async def test_a_reboot_with_seq_and_clock_reset_loses_nothing(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    path = tmp_path / "b.sqlite"
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    clock_reset = datetime(2000, 1, 1, 0, 5, tzinfo=UTC)
    before = [stamped(batch(seq=s, base=s * 2), now + timedelta(seconds=s)) for s in range(1, 6)]
    # The concentrator reboots: seq starts at 0 again, first with its clock right, then
    # with its clock reset to 2000 (still inside the default window), then a wild seq.
    same_clock = [
        stamped(batch(seq=s, base=100 + s * 2), now + timedelta(seconds=60 + s)) for s in range(3)
    ]
    reset = [
        stamped(batch(seq=s, base=200 + s * 2), clock_reset + timedelta(seconds=s))
        for s in range(3)
    ]
    wild = stamped(batch(seq=10**9, base=300), now + timedelta(seconds=120))
    wild["ts"] = "2100-01-01T00:00:00Z"  # a batch time far ahead: not a reading, no harm
    after = [
        stamped(batch(seq=s, base=400 + s * 2), now + timedelta(seconds=200 + s)) for s in (3, 4)
    ]
    messages = [*before, *same_clock, *reset, wild, *after]
    with Publisher(mosquitto.host, mosquitto.port) as pub:
        async with ingesting(path, mosquitto) as (_buf, ing, _):
            await asyncio.to_thread(pub.publish_many, [(TOPIC, encode(m)) for m in messages])
            await until(lambda: len(readings(path)) == 4 * len(messages), what="every reading")
            assert ing.duplicates == 0
    stored = readings(path)
    assert len({(m, k, ts) for m, k, _, ts in stored}) == 4 * len(messages)
    restarts = [r for k, _, r in events(path) if k == "counter_reset"]
    assert restarts == [
        "concentrator seq restarted at 0 after 5",
        "concentrator seq restarted at 0 after 2",
        # A jump past SEQ_GAP_MAX is a new count, not a gap of a billion messages.
        "concentrator seq jumped from 2 to 1000000000, more than 100000 ahead: "
        "taken as a new count, no gap filed",
        "concentrator seq restarted at 3 after 1000000000",
    ]
    assert "network_gap" not in [k for k, _, _ in events(path)]


@pytest.mark.asyncio
async def test_readings_stamped_outside_the_window_are_quarantined_never_stored(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    path = tmp_path / "b.sqlite"
    body = batch(seq=1, meters=4, points=1)
    for reading, ts in zip(
        body["readings"],
        ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z"],
        strict=False,
    ):
        reading["ts"] = ts
    with Publisher(mosquitto.host, mosquitto.port) as pub:
        async with ingesting(path, mosquitto) as (buf, ing, metrics):
            await asyncio.to_thread(pub.publish, TOPIC, encode(body))
            await until(lambda: buf.stats().rows == 2, what="the good reading and an event")
            # Counted when the commit's callback runs, a moment after the rows are in.
            await until(lambda: ing.refused_readings == 3, what="the refused readings counted")
            assert (
                metrics.registry.get_sample_value(
                    "metergw_quarantined_total", {"origin": "ingest", "reason": "timestamp"}
                )
                == 1
            )
    [stored] = readings(path)
    assert stored[0] == "dlt645-2007:000000000003"
    [(kind, subject, reason)] = events(path)
    assert (kind, subject) == ("readings_quarantined", "c1")
    assert reason.startswith("3 reading(s) refused: timestamp")
    with sqlite3.connect(path) as conn:
        [(qkind, payload)] = conn.execute("SELECT kind, payload FROM quarantine").fetchall()
    assert qkind == "timestamp"
    assert b"dlt645-2007:000000000000" in payload
    assert b"before 2000-01-01" in payload


@pytest.mark.asyncio
async def test_a_shared_subscription_raises_no_false_gaps(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    shared = "$share/metergw/meters/v1/+/readings"
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    with Publisher(mosquitto.host, mosquitto.port) as pub:
        async with (
            ingesting(a, mosquitto, topic=shared) as (buf_a, ing_a, _),
            ingesting(b, mosquitto, topic=shared) as (buf_b, ing_b, _),
        ):
            msgs = [(TOPIC, encode(batch(seq=s, base=s * 2))) for s in range(1, 41)]
            await asyncio.to_thread(pub.publish_many, msgs)
            await until(lambda: ing_a.received + ing_b.received == 40, what="every message")
            await until(lambda: buf_a.stats().rows + buf_b.stats().rows == 160, what="stored")
            assert ing_a.received > 0
            assert ing_b.received > 0  # the broker really split them
    assert not [e for e in events(a) + events(b) if e[0] == "network_gap"]


# -- a property: hostile messages among valid ones ---------------------------------------


def _hostile() -> st.SearchStrategy[bytes]:
    """Messages that must be refused (or whose readings must all be refused)."""
    base = batch(seq=1, meters=1, points=1, base=9000)
    numbers = st.sampled_from(
        [10**400, -(10**30), 1e308, "9E+999999999999999999", "1e-999999999", "NaN", "x", True]
    )
    # (a seq of "1" is valid: the schema takes numbers in strings, as pydantic's lax mode does)
    seqs = st.sampled_from([-1, 2**63, 2**64, 1.5, "-1", None, [1]])
    stamps = st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "yesterday", 0])

    def with_value(v: Any) -> bytes:
        body = batch(seq=1, meters=1, points=1, base=9000)
        body["readings"][0]["points"][0]["v"] = v
        return raw(body)

    def with_seq(s: Any) -> bytes:
        return raw({**base, "seq": s})

    def with_stamp(t: Any) -> bytes:
        body = batch(seq=1, meters=1, points=1, base=9000)
        body["readings"][0]["ts"] = t
        return encode(body)

    return st.one_of(
        st.binary(max_size=300),
        numbers.map(with_value),
        seqs.map(with_seq),
        stamps.map(with_stamp),
        st.text(min_size=65, max_size=2000).map(lambda gw: encode({**base, "gw": gw})),
        st.integers(1, 3000).map(lambda d: b"[" * d + b"]" * d),
        st.integers(1, 3000).map(lambda d: b'{"a":' * d + b"1" + b"}" * d),
        st.just(encode({**base, "readings": "all"})),
    )


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(hostile=st.lists(_hostile(), min_size=1, max_size=25), where=st.randoms())
@example(
    hostile=[
        b'{"schema":"metergw.readings/1","gw":"c1","seq":1,"ts":"0226-01-12T00:00:15Z",'
        b'"readings":[{"meter":{"addr":"0","proto":"dlt645-2007","port":""},'
        b'"ts":"0001-01-01T00:00:00Z","points":[{"id":"","key":"energy_import_total_kwh",'
        b'"v":0,"u":""}]}]}'
    ],
    where=__import__("random").Random(1),
)
def test_hostile_messages_are_all_accounted_and_every_valid_reading_stored_once(
    mosquitto: MosquittoServer, hostile: list[bytes], where: Any
) -> None:
    valid = [encode(batch(seq=s, meters=2, points=2, base=s * 2)) for s in range(1, 21)]
    mixed = [(p, False) for p in valid]
    for h in hostile:
        mixed.insert(where.randint(0, len(mixed)), (h, True))

    async def scenario(path: Path) -> tuple[ConcentratorIngest, list[tuple[str, str, str]]]:
        with Publisher(mosquitto.host, mosquitto.port) as pub:
            async with ingesting(path, mosquitto) as (_buf, ing, _):
                await asyncio.to_thread(pub.publish_many, [(TOPIC, p) for p, _ in mixed])
                # Never stalls: every message ends accounted for, in bounded time.
                await until(lambda: ing.received == len(mixed), 30, "every message")
                await until(lambda: ing._window.messages == 0, 30, "every message settled")
        return ing, events(path)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.sqlite"
        ing, evs = asyncio.run(scenario(path))
        stored = readings(path)
    expected = {
        (f"dlt645-2007:{s * 2 + m:012d}", k)
        for s in range(1, 21)
        for m in range(2)
        for k in ("energy_import_total_kwh", "voltage_l1_v")
    }
    got = [(m, k) for m, k, _, _ in stored]
    assert sorted(got) == sorted(expected)  # every valid reading, exactly once
    # Each hostile message left exactly one trace: refused, or its readings quarantined, or
    # (the same bytes sent twice) a repeat of one already accounted for.
    accounted = [
        e for e in evs if e[0] in ("payload_rejected", "readings_quarantined", "message_repeated")
    ]
    assert len(accounted) == len(hostile)
    assert ing.rejected + ing.duplicates + ing.refused_messages == len(hostile)
