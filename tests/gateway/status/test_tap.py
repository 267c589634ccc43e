"""The tap on a real buffer: full detail for polled meters, bounded for concentrators."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from rich.console import Console

from gateway.buffer import Buffer, Outcome, WriteJob
from gateway.config.northbound import BufferConfig
from gateway.demo.liveview import LiveView
from gateway.ingest.decode import decode_message, message_job
from gateway.metrics import Metrics
from gateway.model import Reading, TimeSource
from gateway.status import RecentEvents, StatusModel, Tap
from gateway.status.render import status_view
from gateway.status.report import STALE_AFTER_MS
from gateway.status.tap import DETAIL_LIMIT
from gateway.writepath import WritePath
from tests.gateway.ingest.payloads import BATCH_TS, batch, encode, reading_ts

pytestmark = pytest.mark.timeout(60)

C1 = "meters/v1/c1/readings"
C2 = "meters/v1/c2/readings"
LIMIT = 3


def meter_id(n: int) -> str:
    """The id the ingest gives the ``n``-th meter of :func:`batch`."""
    return f"dlt645-2007:{n:012d}"


class TapOn(Tap):
    """A tap listening to a write path over ``buffer``, as the daemon wires it."""

    def __init__(self, buffer: Buffer, recent: RecentEvents, detail_limit: int = DETAIL_LIMIT):
        super().__init__(recent, detail_limit=detail_limit)
        self.path = WritePath(buffer, listeners=(self,))

    async def accept(self, readings: list[Reading]) -> WriteJob:
        return await self.path.accept(readings)

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        return self.path.submit(job)


def watched(buffer: Buffer, limit: int = LIMIT) -> tuple[TapOn, StatusModel]:
    """A tap on ``buffer`` and the status model that reports it."""
    recent = RecentEvents()
    tap = TapOn(buffer, recent, detail_limit=limit)
    model = StatusModel("gw", Metrics(), recent)
    model.tap = tap
    return tap, model


def polled(meter: str, n: int) -> list[Reading]:
    """Two quantities of a polled meter, as the scheduler hands them over."""
    now = int(time.time() * 1000)
    return [
        Reading(meter, key, Decimal(f"{n}.5"), unit, now, TimeSource.POLL, now, "rs485-1")
        for key, unit in (("energy_import_total_kwh", "kWh"), ("voltage_l1_v", "V"))
    ]


async def message(tap: TapOn, topic: str, body: dict[str, Any], received_ms: int = 0) -> WriteJob:
    """Submit one concentrator message the way the ingest does, and wait for its commit."""
    payload = encode(body)
    received = received_ms or int(time.time() * 1000)
    decoded = decode_message(topic, payload, received)
    return await tap.submit(message_job(topic, payload, received, decoded))


@pytest_asyncio.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    async with await Buffer.open(
        str(tmp_path / "b.sqlite"), BufferConfig(commit_interval=0.01), Metrics()
    ) as buf:
        yield buf


@pytest.mark.asyncio
async def test_polled_meters_keep_full_detail_whatever_the_limit(buffer: Buffer) -> None:
    tap = TapOn(buffer, RecentEvents(), detail_limit=LIMIT)
    for n in range(LIMIT + 3):
        await tap.accept(polled(f"line-1:{n}", n))

    assert sorted(tap.meters) == [f"line-1:{n}" for n in range(LIMIT + 3)]
    last = tap.meters[f"line-1:{LIMIT + 2}"]
    assert last.source == "rs485-1"
    assert last.readings == 2
    assert {k: (v[0], v[1]) for k, v in last.values.items()} == {
        "energy_import_total_kwh": ("5.5", "kWh"),  # the exact decimal text, as stored
        "voltage_l1_v": ("5.5", "V"),
    }
    assert tap.concentrators == {}
    assert not tap.concentrator_meters_truncated
    assert tap.accepted == 2 * (LIMIT + 3)


@pytest.mark.asyncio
async def test_concentrator_meters_beyond_the_limit_are_only_counted(buffer: Buffer) -> None:
    tap = TapOn(buffer, RecentEvents(), detail_limit=LIMIT)
    await tap.accept(polled("line-1:0", 0))
    await message(tap, C1, batch("c1", seq=1, meters=5, points=2))
    second = batch("c1", seq=2, meters=4, points=2)
    for item in second["readings"]:
        for p in item["points"]:
            p["v"] += 100
    await message(tap, C1, second)

    # The polled meter does not use up the concentrator's detail.
    assert set(tap.meters) == {"line-1:0", *(meter_id(n) for n in range(LIMIT))}
    first = tap.meters[meter_id(0)]
    assert first.source == C1
    assert first.readings == 4
    # Meters already tracked keep updating.
    assert first.values["energy_import_total_kwh"][0] == "1100"
    assert first.values["voltage_l1_v"][0] == "1100.01"

    c1 = tap.concentrators[C1]
    assert (c1.messages, c1.readings, c1.meters_last_message) == (2, 18, 4)
    assert c1.received_ms > 0
    # The newest measurement overall: meter 4's, from the first message.
    newest = datetime.fromisoformat(reading_ts(4))
    assert c1.last_reading_ms == int(newest.timestamp() * 1000)
    assert tap.rows_not_detailed == 4 + 2  # meters 3 and 4, then meter 3 again
    assert tap.concentrator_meters_truncated
    assert tap.accepted == 2 + 18

    # A second concentrator finds the detail used up, and still gets its aggregate.
    await message(tap, C2, batch("c2", seq=1, meters=2, points=1, base=50))
    assert meter_id(50) not in tap.meters
    c2 = tap.concentrators[C2]
    assert (c2.messages, c2.readings, c2.meters_last_message) == (1, 2, 2)


@pytest.mark.asyncio
async def test_a_resent_message_is_not_counted_again(buffer: Buffer) -> None:
    tap = TapOn(buffer, RecentEvents(), detail_limit=LIMIT)
    body = batch("c1", seq=7, meters=5, points=2)
    await message(tap, C1, body)
    job = await message(tap, C1, body)

    assert job.outcome is Outcome.DUPLICATE
    c1 = tap.concentrators[C1]
    assert (c1.messages, c1.readings) == (1, 10)
    assert tap.meters[meter_id(0)].readings == 2
    assert tap.rows_not_detailed == 4


@pytest.mark.asyncio
async def test_meters_in_the_last_message_are_distinct_meters(buffer: Buffer) -> None:
    tap = TapOn(buffer, RecentEvents(), detail_limit=LIMIT)
    body = batch("c1", seq=1, meters=2, points=2)
    # The same meter twice in one message (two measurement times), another in between.
    again = dict(body["readings"][0], ts=BATCH_TS.replace(":00:00Z", ":05:00Z"))
    body["readings"].append(again)
    await message(tap, C1, body)

    c1 = tap.concentrators[C1]
    assert (c1.readings, c1.meters_last_message) == (6, 2)
    assert tap.meters[meter_id(0)].readings == 4


@pytest.mark.asyncio
async def test_status_lists_concentrators_and_says_meter_detail_is_truncated(
    buffer: Buffer,
) -> None:
    tap, model = watched(buffer)
    await tap.accept(polled("line-1:0", 0))
    await message(tap, C1, batch("c1", seq=1, meters=5, points=2))
    old = int(time.time() * 1000) - STALE_AFTER_MS - 60_000
    await message(tap, C2, batch("c2", seq=1, meters=1, points=1, base=50), received_ms=old)

    doc = model.snapshot()
    rows = {c["topic"]: c for c in doc["concentrators"]}
    assert [c["topic"] for c in doc["concentrators"]] == [C1, C2]
    assert rows[C1]["state"] == "reporting"
    assert (rows[C1]["messages"], rows[C1]["readings"], rows[C1]["meters_last_message"]) == (
        1,
        10,
        5,
    )
    assert rows[C1]["received_ms"] == tap.concentrators[C1].received_ms
    assert rows[C2]["state"] == "stale"
    assert rows[C2]["received_ms"] == old
    assert doc["concentrator_meters_detail_limit"] == LIMIT
    assert doc["concentrator_meters_truncated"] is True
    assert doc["concentrator_readings_not_detailed"] == 2 * 2 + 1
    listed = {m["meter"] for m in doc["meters"]}
    assert listed == {"line-1:0", *(meter_id(n) for n in range(LIMIT))}
    assert doc["readings_accepted"] == 2 + 10 + 1


@pytest.mark.asyncio
async def test_status_without_truncation_says_so(buffer: Buffer) -> None:
    tap, model = watched(buffer, DETAIL_LIMIT)
    await message(tap, C1, batch("c1", seq=1, meters=5, points=2))

    doc = model.snapshot()
    assert doc["concentrator_meters_truncated"] is False
    assert doc["concentrator_meters_detail_limit"] == 200
    assert len([m for m in doc["meters"] if m["protocol"] == "concentrator"]) == 5


def rendered(doc: dict[str, Any]) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(status_view(doc))
    return console.export_text()


def line_with(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


@pytest.mark.asyncio
async def test_status_view_shows_a_row_per_concentrator_and_the_truncation(buffer: Buffer) -> None:
    tap, model = watched(buffer)
    await message(tap, C1, batch("c1", seq=1, meters=5, points=2))
    await message(tap, C1, batch("c1", seq=2, meters=4, points=3))

    text = rendered(model.snapshot())
    assert "Concentrators" in text
    cells = [cell.strip() for cell in line_with(text, C1).split("│")[1:-1]]
    assert cells[:5] == [C1, "reporting", "2", "22", "4"]
    assert cells[5].endswith("s ago")
    assert f"meter detail for the first {LIMIT} concentrator meters only" in text

    # Without concentrators there is no table; without truncation, no caption.
    tap2 = TapOn(buffer, model.recent)
    model.tap = tap2
    assert "Concentrators" not in rendered(model.snapshot())
    await message(tap2, C2, batch("c2", seq=1, meters=2, points=1))
    text = rendered(model.snapshot())
    assert C2 in line_with(text, "reporting")
    assert "meter detail" not in text


@pytest.mark.asyncio
async def test_live_view_gives_the_concentrators_room_taken_from_the_meters(
    buffer: Buffer,
) -> None:
    tap, model = watched(buffer)
    for n in range(60):
        await tap.accept(polled(f"line-1:{n}", n))
    without = model.snapshot()
    for c in range(8):
        await message(tap, f"meters/v1/c{c}/readings", batch(f"c{c}", seq=1, meters=5))
    with_concentrators = model.snapshot()

    def lines(doc: dict[str, Any]) -> list[str]:
        console = Console(record=True, width=120, height=60, color_system=None)
        console.print(LiveView(console, interactive=True).frame(doc))
        return console.export_text().splitlines()

    plain, busy = lines(without), lines(with_concentrators)
    assert "Concentrators" in "\n".join(busy)
    assert "3 more concentrators not shown" in "\n".join(busy)
    # The screen is no taller: the meters table gave up the concentrators' lines.
    assert len(busy) == len(plain)
