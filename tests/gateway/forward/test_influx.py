"""InfluxDB sink and forwarder: real VictoriaMetrics, and a real HTTP server that refuses."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.buffer import Buffer
from gateway.config.northbound import BufferConfig
from gateway.forward import Forwarder, InfluxSink
from gateway.forward.influx import InfluxSinkConfig
from gateway.metrics import Metrics
from tests.gateway.buffer.factory import T0, reading
from tests.gateway.forward.conftest import WriteServer, sink_errors
from tests.servers import VictoriaMetricsServer

pytestmark = pytest.mark.asyncio


async def until(pred: Callable[[], bool], within: float = 20.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not pred():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


def sink_config(url: str, **kw: object) -> InfluxSinkConfig:
    base: dict[str, object] = {"url": url, "token": "t", "org": "o", "bucket": "b"}
    base.update(batch_size=200, flush_interval=0.02, timeout=3.0)
    base.update(kw)
    return InfluxSinkConfig.model_validate(base)


@asynccontextmanager
async def forwarding(
    tmp_path: Path, cfg: InfluxSinkConfig, metrics: Metrics, name: str = "influx"
) -> AsyncIterator[tuple[Buffer, Forwarder]]:
    buf = await Buffer.open(
        str(tmp_path / "b.sqlite"), BufferConfig(commit_interval=0.005), metrics
    )
    sink = InfluxSink(cfg, metrics, name=name)
    fw = Forwarder(buf, sink, metrics, retry_min=0.05, retry_max=0.3, auth_retry=0.2)
    task = asyncio.create_task(fw.run())
    try:
        yield buf, fw
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sink.close()
        await buf.close()


def exported(vm: VictoriaMetricsServer) -> dict[tuple[str, int], list[float]]:
    """(meter, ts_ms) -> the values VictoriaMetrics holds for meter_value."""
    out: dict[tuple[str, int], list[float]] = {}
    for series in vm.export('{__name__="meter_value"}'):
        meter = series["metric"]["meter"]
        for ts, v in zip(series["timestamps"], series["values"], strict=True):
            out.setdefault((meter, ts), []).append(v)
    return out


async def test_readings_arrive_with_their_identity_and_replays_collapse(
    tmp_path: Path, victoria_metrics: VictoriaMetricsServer
) -> None:
    metrics = Metrics()
    readings = [reading(i, meter=f"dlt645-2007:00000000000{i % 3}") for i in range(500)]
    readings.append(reading(500, meter="odd meter,with=chars", value="123456.78"))
    async with forwarding(tmp_path, sink_config(victoria_metrics.url), metrics) as (buf, fw):
        await buf.accept(readings)
        await until(lambda: fw.delivered == 501, what="501 points")
    # A second sink over the same buffer writes every point again: same identity, no new samples.
    async with forwarding(tmp_path, sink_config(victoria_metrics.url), metrics, "again") as (
        _b,
        fw2,
    ):
        await until(lambda: fw2.delivered == 501, what="the replay")
    got = await asyncio.to_thread(exported, victoria_metrics)
    assert len(got) == 501
    # The replay repeats each point's identity and value; VictoriaMetrics may list such a
    # repeat until its next background merge deduplicates it (InfluxDB overwrites at once).
    assert all(len(set(v)) == 1 for v in got.values())
    assert set(got[("odd meter,with=chars", T0 + 500_000)]) == {123456.78}
    assert set(got[("dlt645-2007:000000000001", T0 + 1000)]) == {float(Decimal("1.01"))}
    series = await asyncio.to_thread(victoria_metrics.export, '{__name__="meter_value"}')
    labels = {k for s in series for k in s["metric"]}
    assert labels == {"__name__", "meter", "quantity", "source", "quality"}
    assert {s["metric"]["quality"] for s in series} == {"ok", "estimated"}


async def test_tsdb_outage_delays_but_loses_and_repeats_nothing(
    tmp_path: Path, victoria_metrics: VictoriaMetricsServer
) -> None:
    metrics = Metrics()
    async with forwarding(tmp_path, sink_config(victoria_metrics.url), metrics) as (buf, fw):
        await buf.accept([reading(i) for i in range(100)])
        await until(lambda: fw.delivered == 100, what="first 100")
        await asyncio.to_thread(victoria_metrics.stop)
        for chunk in range(1, 10):
            await buf.accept([reading(chunk * 100 + i) for i in range(100)])
        await until(
            lambda: sink_errors(metrics, "influx", "connection") >= 2,
            what="failed attempts",
        )
        assert buf.stats().sinks["influx"].depth == 900
        assert len(buf._reads.tail) == 0  # no rows kept in memory for a sink that is down
        await asyncio.to_thread(victoria_metrics.start)
        await until(lambda: fw.delivered == 1000, what="the backlog")
        await until(lambda: buf.stats().sinks["influx"].depth == 0, what="the cursor")
    got = await asyncio.to_thread(exported, victoria_metrics)
    assert sorted(ts for _, ts in got) == [T0 + i * 1000 for i in range(1000)]
    assert all(len(set(v)) == 1 for v in got.values())


async def test_refused_points_alone_are_quarantined(
    tmp_path: Path, write_server: WriteServer
) -> None:
    metrics = Metrics()
    write_server.reject_marker = "BAD"
    readings = [reading(i, meter="BAD-meter" if i in (7, 150) else "m1") for i in range(200)]
    async with forwarding(tmp_path, sink_config(write_server.url), metrics) as (buf, fw):
        await buf.accept(readings)
        await until(lambda: buf.stats().quarantined == 2, what="2 quarantined points")
        await until(lambda: buf.stats().sinks["influx"].depth == 0, what="the cursor")
        assert fw.delivered == 198
    assert len(write_server.lines) == 198
    assert not any("BAD" in line for line in write_server.lines)
    assert (
        metrics.registry.get_sample_value("metergw_sink_quarantined_total", {"sink": "influx"}) == 2
    )
    with sqlite3.connect(tmp_path / "b.sqlite") as conn:
        rows = conn.execute(
            "SELECT origin, subject, seq, reason FROM quarantine ORDER BY seq"
        ).fetchall()
    assert [(o, s, q) for o, s, q, _ in rows] == [
        ("influx", "BAD-meter", 8),
        ("influx", "BAD-meter", 151),
    ]
    assert all("HTTP 400" in r[3] for r in rows)


async def test_throttling_and_server_errors_are_retried(
    tmp_path: Path, write_server: WriteServer
) -> None:
    metrics = Metrics()
    write_server.status_queue = [(429, {"Retry-After": "0.2"}), (503, {}), (500, {})]
    async with forwarding(tmp_path, sink_config(write_server.url), metrics) as (buf, fw):
        await buf.accept([reading(i) for i in range(50)])
        await until(lambda: fw.delivered == 50, what="delivery after the errors")
    assert len(write_server.lines) == 50
    errors = {kind: sink_errors(metrics, "influx", kind) for kind in ("throttled", "http_5xx")}
    assert errors == {"throttled": 1.0, "http_5xx": 2.0}


async def test_refused_credentials_raise_an_alarm_and_keep_the_data(
    tmp_path: Path, write_server: WriteServer
) -> None:
    metrics = Metrics()
    write_server.auth_ok = False
    async with forwarding(tmp_path, sink_config(write_server.url), metrics) as (buf, _fw):
        await buf.accept([reading(i) for i in range(20)])
        await until(lambda: write_server.requests >= 2, what="refused attempts")
        assert buf.stats().sinks["influx"].depth >= 20
        write_server.auth_ok = True
        await until(lambda: buf.stats().sinks["influx"].depth == 0, what="delivery")
    kinds = [ln.split(",")[1] for ln in write_server.lines if ln.startswith("metergw_event")]
    assert kinds == ["kind=sink_auth_failed"]
    assert sum(1 for ln in write_server.lines if ln.startswith("meter,")) == 20
