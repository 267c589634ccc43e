"""The status API against a daemon polling simulated meters: /status, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.buffer import Buffer
from gateway.cli import main
from gateway.metrics import Metrics
from gateway.model import Event, EventKind
from gateway.scheduler import Scheduler
from gateway.status import RecentEvents, RecentLogHandler, StatusModel, StatusServer, Tap
from gateway.writepath import WritePath
from tests.gateway.status.conftest import ADDRESSES, Running, eventually, line_config
from tests.servers import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.mark.asyncio
async def test_status_reports_a_meter_going_offline_and_coming_back(running: Running) -> None:
    bad, good = ADDRESSES[0], ADDRESSES[1]

    async def both_online() -> bool:
        doc = await running.status()
        states = {m["meter"]: m for m in doc["meters"]}
        return all(
            states[a]["state"] == "online" and states[a]["last_reading_ms"] for a in ADDRESSES
        )

    await eventually(both_online, what="both meters online with readings")
    doc = await running.status()
    assert doc["gateway"]["name"] == "test-gw"
    assert doc["gateway"]["ready"] is True
    assert [b["name"] for b in doc["buses"]] == ["line-1"]
    assert 0.0 <= doc["buses"][0]["utilisation"] <= 1.0
    meter = next(m for m in doc["meters"] if m["meter"] == bad)
    assert meter["values"]["energy_import_total_kwh"]["u"] == "kWh"
    assert meter["values"]["energy_import_total_kwh"]["v"] > 0

    running.meters[bad].set_fault("no_answer")

    async def bad_offline() -> list[dict[str, Any]]:
        # The state changes at once; the event shows once it has committed.
        doc = await running.status()
        meter = next(m for m in doc["meters"] if m["meter"] == bad)
        events = doc["recent"]["events"]
        found = [e for e in events if e["kind"] == "meter_offline" and e["subject"] == bad]
        return found if meter["state"] == "offline" else []

    offline = await eventually(bad_offline, what=f"meter {bad} offline in /status")
    assert offline[0]["level"] == "warning"
    assert (await running.meter(good))["state"] == "online"

    running.meters[bad].clear_faults()

    async def bad_online() -> bool:
        return (await running.meter(bad))["state"] == "online"

    await eventually(bad_online, what=f"meter {bad} back online")


@pytest.mark.asyncio
async def test_metrics_parse_as_prometheus_text(running: Running) -> None:
    async def accepted() -> bool:
        return bool((await running.status())["readings_accepted"] > 0)

    await eventually(accepted, what="first readings accepted")
    async with running.http.get(f"{running.url}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)
    build = samples["metergw_build_info"][0]
    assert build.value == 1
    assert build.labels["version"]
    assert samples["metergw_ready"][0].value == 1
    assert samples["metergw_start_time_seconds"][0].value > 1.7e9
    assert sum(s.value for s in samples["metergw_readings_accepted_total"]) > 0
    polls = {s.labels["result"] for s in samples["metergw_polls_total"]}
    assert polls, "no poll results counted"
    ages = {s.labels["sink"]: s.value for s in samples["metergw_buffer_oldest_unsent_age_seconds"]}
    assert set(ages) == {"local"}


@pytest.mark.asyncio
async def test_healthz_and_readyz_when_running(running: Running) -> None:
    async with running.http.get(f"{running.url}/healthz") as r:
        assert r.status == 200
        assert (await r.json())["status"] == "alive"

    async def ready() -> bool:
        async with running.http.get(f"{running.url}/readyz") as r:
            return r.status == 200

    await eventually(ready, what="/readyz 200")


@pytest.mark.asyncio
async def test_readyz_is_503_until_the_buses_start(
    sim_line: tuple[dict[str, Any], str], tmp_path: Path
) -> None:
    _, device = sim_line
    cfg = line_config(tmp_path, device)
    metrics = Metrics()
    recent = RecentEvents()
    model = StatusModel("test-gw", metrics, recent, buffer_path=str(tmp_path / "b.sqlite"))
    async with StatusServer(model, "127.0.0.1", 0) as srv, aiohttp.ClientSession() as http:

        async def readyz() -> tuple[int, list[str]]:
            async with http.get(f"{srv.url}/readyz") as r:
                return r.status, (await r.json())["reasons"]

        status, reasons = await readyz()
        assert status == 503
        assert "buffer is not open" in reasons

        buffer = await Buffer.open(str(tmp_path / "b.sqlite"), cfg.buffer, metrics)
        try:
            tap = Tap(recent)
            model.buffer, model.tap = buffer, tap
            scheduler = Scheduler(cfg, WritePath(buffer, listeners=(tap,)), metrics)
            model.scheduler = scheduler
            assert await readyz() == (503, ["buses are not started"])

            task = asyncio.create_task(scheduler.run())
            try:

                async def is_ready() -> bool:
                    return (await readyz())[0] == 200

                await eventually(is_ready, what="/readyz 200 once buses started")
                model.stopping = True
                assert await readyz() == (503, ["shutting down"])
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        finally:
            await buffer.close()


@pytest.mark.asyncio
async def test_recent_ring_keeps_events_and_collapses_repeated_errors() -> None:
    recent = RecentEvents(size=8)
    handler = RecentLogHandler(recent)
    log = logging.getLogger("metergw.test_ring")
    log.addHandler(handler)
    try:
        for _ in range(3):
            log.warning({"event": "sink_write_failed", "sink": "influx", "error": "refused"})
        # Named like an event kind: the committed event carries it, not the log.
        log.warning({"event": "meter_offline", "meter": "000000000001"})
        log.info({"event": "not_a_problem"})
    finally:
        log.removeHandler(handler)
    recent.add_events(
        [Event(EventKind.METER_OFFLINE, 1_700_000_000_000, "000000000001", "3 misses")]
    )
    doc = recent.to_json()
    assert [(e["kind"], e["subject"], e["count"]) for e in doc["errors"]] == [
        ("sink_write_failed", "influx", 3)
    ]
    assert [(e["kind"], e["level"], e["reason"]) for e in doc["events"]] == [
        ("meter_offline", "warning", "3 misses")
    ]
    newest = doc["events"][0]["seq"]
    assert recent.to_json(since=newest) == {"events": [], "errors": []}


@pytest.mark.asyncio
async def test_metergw_status_prints_the_tables(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    async def have_readings() -> bool:
        doc = await running.status()
        return all(m["last_reading_ms"] for m in doc["meters"])

    await eventually(have_readings, what="readings from both meters")
    code = await asyncio.to_thread(main, ["status", "--url", running.url])
    out = capsys.readouterr().out
    assert code == 0
    for title in ("Buses", "Meters", "Buffer", "Recent events"):
        assert title in out
    assert "line-1" in out
    for address in ADDRESSES:
        assert address in out
    assert "kWh" in out


def test_metergw_status_says_clearly_when_nothing_answers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["status", "--url", url, "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert f"no answer from {url}/status" in err
    assert "is the daemon running" in err
