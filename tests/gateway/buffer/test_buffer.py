"""The buffer: durability, order, group commit, cursors, retention, cap and bad files."""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.buffer import Buffer, BufferError, WriteJob
from gateway.buffer import writer as writer_module
from gateway.config.northbound import BufferConfig
from gateway.metrics import Metrics
from gateway.model import EventKind, rows_of
from tests.gateway.buffer.factory import event, reading

pytestmark = pytest.mark.asyncio

CFG = BufferConfig(commit_interval=0.01, commit_max_rows=1000)


async def test_accepted_rows_survive_reopen_in_order_with_exact_values(tmp_path: Path) -> None:
    path = str(tmp_path / "b.sqlite")
    async with await Buffer.open(path, CFG, Metrics()) as buf:
        await buf.accept([reading(1), reading(2, value="123456.78")], [event(1)])
        await buf.accept([reading(3, value="1E-7")])
    async with await Buffer.open(path, CFG, Metrics()) as buf:
        batch = await buf.read("s", 0, 100)
    assert [r[0] for r in batch.readings] == [1, 2, 4]
    assert [r[3] for r in batch.readings] == ["1.01", "123456.78", "0.0000001"]
    assert batch.readings[0][9] == 0
    assert batch.readings[2][9] == 0
    assert [e[1] for e in batch.events] == ["meter_offline"]
    assert batch.events[0][0] == 3
    assert batch.upto == 4
    assert Decimal(batch.readings[1][3]) == Decimal("123456.78")


async def test_many_concurrent_accepts_share_few_commits(tmp_path: Path) -> None:
    metrics = Metrics()
    async with await Buffer.open(str(tmp_path / "b.sqlite"), CFG, metrics) as buf:
        await asyncio.gather(*(buf.accept([reading(i)]) for i in range(300)))
        stats = buf.stats()
    assert stats.rows == 300
    assert stats.commits <= 10, stats.commits
    accepted = metrics.registry.get_sample_value(
        "metergw_readings_accepted_total", {"origin": "poll"}
    )
    assert accepted == 300


async def test_read_limit_keeps_events_in_sequence(tmp_path: Path) -> None:
    async with await Buffer.open(str(tmp_path / "b.sqlite"), CFG, Metrics()) as buf:
        for i in range(5):
            await buf.accept([reading(i)], [event(i)])
        first = await buf.read("s", 0, 2)
        rest = await buf.read("s", first.upto, 100)
    # Readings 1,3 and the event 2 between them; the event 4 after the limit goes next.
    assert [r[0] for r in first.readings] == [1, 3]
    assert [e[0] for e in first.events] == [2]
    assert first.upto == 3
    assert [e[0] for e in rest.events] == [4, 6, 8, 10]
    assert rest.upto == 10


async def test_rows_go_only_when_every_sink_has_passed_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "MAINTAIN_EVERY_S", 0.0)
    path = str(tmp_path / "b.sqlite")
    async with await Buffer.open(path, CFG, Metrics()) as buf:
        assert await buf.register_sink("a") == 0
        assert await buf.register_sink("b") == 0
        await buf.accept([reading(i) for i in range(10)])
        await buf.advance("a", 10)
        await buf.accept([reading(10)])
        assert buf.stats().rows == 11
        assert buf.stats().sinks["a"].depth == 1
        assert buf.stats().sinks["b"].depth == 11
        await buf.advance("b", 4)
        await buf.accept([reading(11)])
        assert buf.stats().rows == 8
    async with await Buffer.open(path, CFG, Metrics()) as buf:
        assert buf.stats().sinks["b"].cursor == 4
        batch = await buf.read("b", 4, 100)
        assert [r[0] for r in batch.readings] == list(range(5, 13))
        await buf.forget_sink("b")
        await buf.advance("a", 12)
        await buf.accept([reading(12)])
        assert buf.stats().rows == 1
        assert buf.head_seq == 13


async def test_sequence_never_goes_back_after_everything_was_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "MAINTAIN_EVERY_S", 0.0)
    path = str(tmp_path / "b.sqlite")
    async with await Buffer.open(path, CFG, Metrics()) as buf:
        await buf.register_sink("a")
        await buf.accept([reading(1), reading(2)])
        await buf.advance("a", 2)
        await buf.accept([])
        assert buf.stats().rows == 0
    async with await Buffer.open(path, CFG, Metrics()) as buf:
        await buf.accept([reading(3)])
        batch = await buf.read("a", 2, 10)
    assert [r[0] for r in batch.readings] == [3]


async def test_disk_cap_drops_oldest_counts_and_alarms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "MAINTAIN_EVERY_S", 0.0)
    metrics = Metrics()
    cfg = BufferConfig(max_bytes=256 * 1024, commit_interval=0.0)
    async with await Buffer.open(str(tmp_path / "b.sqlite"), cfg, metrics) as buf:
        await buf.register_sink("influx")
        for chunk in range(20):
            await buf.accept([reading(chunk * 500 + i) for i in range(500)])
        stats = buf.stats()
        batch = await buf.read("influx", 0, 20_000)
    assert stats.dropped > 0
    assert metrics.registry.get_sample_value("metergw_buffer_dropped_total") == stats.dropped
    assert batch.readings[0][0] > 1  # the oldest went first
    assert batch.readings[-1][0] == 10_000 or batch.readings[-1][0] > 9_000
    alarms = [e for e in batch.events if e[1] == EventKind.BUFFER_CAP_DROPPED.value]
    assert alarms
    assert "disk budget" in alarms[0][4]


async def test_corrupt_file_is_a_startup_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(BufferError, match=str(path)):
        await Buffer.open(str(path), CFG, Metrics())
    assert path.read_bytes().startswith(b"this is not a database")  # never reset


async def test_directory_in_place_of_the_file_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(BufferError, match="is a directory"):
        await Buffer.open(str(tmp_path), CFG, Metrics())


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(BufferError, match="newer"):
        await Buffer.open(str(path), CFG, Metrics())


async def test_close_commits_what_is_pending_and_returns(tmp_path: Path) -> None:
    path = str(tmp_path / "b.sqlite")
    buf = await Buffer.open(path, BufferConfig(commit_interval=30.0, commit_max_rows=4), Metrics())
    await buf.register_sink("a")
    # A full group commits at once; the committer then waits for more.
    await asyncio.wait_for(
        buf.submit(WriteJob(rows=rows_of([reading(1), reading(2), reading(3)]))), 5
    )
    lingering = buf.submit(WriteJob(rows=[reading(4).values()]))
    advance = buf.advance("a", 1)
    await asyncio.wait_for(buf.close(), 5)  # does not wait out the 30 s linger
    assert lingering.done()
    assert advance.done()
    async with await Buffer.open(path, CFG, Metrics()) as again:
        assert again.stats().rows == 4
        assert again.stats().sinks["a"].cursor == 1
