"""The gap ledger in the buffer: schema 3, its migration, and rows written with readings."""

from __future__ import annotations

import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.buffer import Buffer, WriteJob
from gateway.buffer import schema as schema_module
from gateway.config.northbound import BufferConfig
from gateway.gaps import (
    GapCause,
    GapLedger,
    GapRecord,
    GapState,
    expected_intervals,
    file_gap,
    read_gaps,
)
from gateway.metrics import Metrics
from gateway.model import Quality, Reading, TimeSource

CFG = BufferConfig(commit_max_rows=1000)
T0 = 1_790_000_000_000 - 1_790_000_000_000 % 900_000


def gap(**changes: object) -> GapRecord:
    rec = GapRecord.opened(
        "m1", GapCause.METER_OFFLINE, ["energy_import_total_kwh"], T0, T0 + 7_200_000, 900, T0
    )
    return rec.but(**changes)


def test_expected_intervals_count_the_boundaries_inside_the_gap() -> None:
    assert expected_intervals(T0, T0 + 7_200_000, 900) == 8
    assert expected_intervals(T0 + 1, T0 + 899_999, 900) == 0
    assert expected_intervals(T0 - 1, T0, 900) == 1
    assert gap().missing == 8
    assert gap(recovered=3).missing == 5


@pytest.mark.asyncio
async def test_a_gap_row_commits_with_the_readings_it_concerns(tmp_path: Path) -> None:
    path = str(tmp_path / "b.sqlite")
    rec = gap(state=GapState.FILLING, recovered=1, todo_from_ms=T0 + 900_000)
    reading = Reading(
        "m1",
        "energy_import_total_kwh",
        Decimal("1.5"),
        "kWh",
        T0 + 900_000,
        TimeSource.METER,
        T0,
        "bus",
        Quality.BACKFILLED,
    )
    async with await Buffer.open(path, CFG, Metrics()) as buf:
        await buf.submit(WriteJob(rows=[reading.values()], gaps=[rec.row()]))
        # A later row of the same gap replaces it.
        await buf.submit(WriteJob(gaps=[rec.but(state=GapState.FILLED, recovered=8).row()]))
    rows = read_gaps(path)
    assert rows == [rec.but(state=GapState.FILLED, recovered=8)]
    assert rows[0].missing == 0
    # Finished gaps are read back only when asked for recent ones.
    assert read_gaps(path, since_ms=T0 + 1) == []


@pytest.mark.asyncio
async def test_a_version_2_buffer_gains_the_gap_ledger_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.sqlite"
    v2_ddl = schema_module.DDL[: schema_module.DDL.index("CREATE TABLE IF NOT EXISTS gaps")]
    conn = sqlite3.connect(path)
    conn.executescript(v2_ddl)
    conn.execute(
        "INSERT INTO readings VALUES (5, 'm', 'voltage_l1_v', '230.1', 'V', 1, 'poll', 2, 'b', 0,"
        " NULL)"
    )
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    assert not conn.execute("SELECT name FROM sqlite_master WHERE name='gaps'").fetchall()
    conn.close()
    async with await Buffer.open(str(path), CFG, Metrics()) as buf:
        assert buf.head_seq == 5
        await buf.submit(WriteJob(gaps=[gap().row()]))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert conn.execute("SELECT seq FROM readings").fetchall() == [(5,)]
    conn.close()
    assert [g.id for g in read_gaps(str(path))] == [f"m1@{T0}"]


def test_the_ledger_view_counts_gaps_by_state() -> None:
    metrics = Metrics()
    ledger = GapLedger(metrics)
    ledger.note([gap(), gap(id="b", state=GapState.UNRECOVERABLE, updated_ms=T0)])
    ledger.note([gap(state=GapState.FILLING)])
    assert metrics.gaps.labels("filling")._value.get() == 1
    assert metrics.gaps.labels("open")._value.get() == 0
    assert metrics.gaps.labels("unrecoverable")._value.get() == 1
    doc = ledger.to_json(T0 + 1000)
    assert doc["counts"] == {
        "open": 0,
        "filling": 1,
        "filled": 0,
        "partly_filled": 0,
        "unrecoverable": 1,
    }
    assert [g["state"] for g in doc["gaps"]] == ["filling", "unrecoverable"]  # type: ignore[index]
    assert [g.id for g in ledger.active()] == [f"m1@{T0}"]


@pytest.mark.asyncio
async def test_finished_gaps_are_pruned_after_90_days_active_ones_never(tmp_path: Path) -> None:
    path = str(tmp_path / "b.sqlite")
    async with await Buffer.open(path, CFG, Metrics()):
        pass
    now = int(time.time() * 1000)
    old = now - 91 * 86_400_000
    file_gap(path, gap(id="old-filled", state=GapState.FILLED, updated_ms=old))
    file_gap(path, gap(id="old-open", updated_ms=old))
    file_gap(path, gap(id="new-filled", state=GapState.FILLED, updated_ms=now - 86_400_000))
    async with await Buffer.open(path, CFG, Metrics()) as buf:
        await buf.submit(WriteJob(gaps=[gap(id="x").row()]))
    assert sorted(g.id for g in read_gaps(path)) == ["new-filled", "old-open", "x"]


def test_status_shows_the_gaps_with_their_progress() -> None:
    from rich.console import Console

    from gateway.status import RecentEvents, StatusModel
    from gateway.status.render import status_view

    ledger = GapLedger()
    ledger.note(
        [
            gap(state=GapState.FILLING, recovered=3, todo_from_ms=T0 + 3_600_000),
            gap(id="u", state=GapState.UNRECOVERABLE, updated_ms=int(time.time() * 1000)),
        ]
    )
    model = StatusModel("gw", Metrics(), RecentEvents(10))
    model.gaps = ledger
    doc = model.snapshot()
    rows = doc["gaps"]["gaps"]
    assert [(g["state"], g["progress"]) for g in rows] == [("filling", 0.5), ("unrecoverable", 1.0)]
    console = Console(record=True, width=160)
    console.print(status_view(doc))
    text = console.export_text()
    assert "Gaps" in text
    assert "1 filling, 1 unrecoverable" in text
    assert "3/8" in text
    assert "50 %" in text
