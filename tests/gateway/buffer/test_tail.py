"""The tail: rows just committed, served from memory exactly as the database serves them."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.buffer import Batch, Buffer, WriteJob
from gateway.buffer import reads as reads_module
from gateway.buffer import tail as tail_module
from gateway.buffer import writer as writer_module
from gateway.buffer.schema import connect_reader
from gateway.config.northbound import BufferConfig
from gateway.ingest.decode import decode_message, message_job
from gateway.metrics import Metrics
from gateway.model import rows_of
from tests.gateway.buffer.factory import event, reading
from tests.gateway.ingest.payloads import batch as payload_batch
from tests.gateway.ingest.payloads import encode

SINKS = ("influx", "mqtt")
CFG = BufferConfig(commit_interval=0.0, commit_max_rows=50)


def _typed(batch: Batch) -> tuple[Any, ...]:
    """A batch with the type of every value, so that 1 and True or str and bytes differ."""
    rows = [tuple((type(v).__name__, v) for v in r) for r in (*batch.readings, *batch.events)]
    return (rows, len(batch.readings), batch.upto)


class _DatabaseReads:
    """Counts the reads that go to SQLite, and answers them from SQLite as before."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = reads_module._read_batch

        def counted(conn: sqlite3.Connection, after: int, limit: int) -> Batch:
            self.calls += 1
            return real(conn, after, limit)

        monkeypatch.setattr(reads_module, "_read_batch", counted)


async def _history(path: str, ops: list[tuple[str, int, int]]) -> int:
    """Run ``ops``; check every sink read against a fresh database read. Returns how many
    reads the tail answered."""
    from_tail = 0
    n = 0
    buf = await Buffer.open(path, CFG, Metrics())
    pos = {s: await buf.register_sink(s) for s in SINKS}
    check = connect_reader(path)
    try:
        for kind, a, b in ops:
            if kind == "accept":
                rows = [reading(n + i) for i in range(a)]
                n += a
                await buf.accept(rows, [event(n)] * b)
            elif kind == "read":
                sink = SINKS[a % 2]
                served = buf._reads.tail.read(pos[sink], b) is not None
                got = await buf.read(sink, pos[sink], b)
                assert _typed(got) == _typed(reads_module._read_batch(check, pos[sink], b))
                from_tail += served
                await buf.advance(sink, got.upto)
                pos[sink] = got.upto
            else:
                await buf.close()
                buf = await Buffer.open(path, CFG, Metrics())
                pos = {s: buf.stats().sinks[s].cursor for s in SINKS}
    finally:
        await buf.close()
        check.close()
    return from_tail


op = st.one_of(
    st.tuples(st.just("accept"), st.integers(0, 30), st.integers(0, 3)),
    st.tuples(st.just("read"), st.integers(0, 1), st.integers(1, 4) | st.integers(1, 40)),
    st.tuples(st.just("restart"), st.just(0), st.just(0)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=30), bound=st.sampled_from([5, 25, tail_module.TAIL_ROWS]))
def test_every_read_from_the_tail_equals_the_database_read(
    ops: list[tuple[str, int, int]], bound: int
) -> None:
    kept = tail_module.TAIL_ROWS
    tail_module.TAIL_ROWS = bound  # small bounds make the tail drop rows and restart often
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(_history(str(Path(tmp) / "b.sqlite"), ops))
    finally:
        tail_module.TAIL_ROWS = kept


@pytest.mark.parametrize(
    ("bound", "ops", "served"),
    [
        # More events than the limit, and no reading among them.
        (99, [("accept", 0, 3), ("accept", 0, 3), ("read", 0, 2), ("read", 0, 1)], 2),
        (99, [("accept", 2, 3), ("read", 0, 3), ("read", 1, 2), ("read", 1, 9)], 3),
        # "mqtt" one row behind the start of the tail: the database answers it.
        (
            5,
            [("accept", 4, 0), ("read", 0, 40), ("read", 1, 1), ("accept", 3, 0), ("read", 1, 9)],
            2,
        ),
        # No sink can use the tail: it is emptied, and both read the database.
        (
            5,
            [("accept", 4, 0), ("read", 1, 1), ("accept", 3, 0), ("read", 1, 9), ("read", 0, 9)],
            1,
        ),
    ],
)
def test_histories_at_the_edges_of_the_tail(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bound: int,
    ops: list[tuple[str, int, int]],
    served: int,
) -> None:
    monkeypatch.setattr(tail_module, "TAIL_ROWS", bound)
    assert asyncio.run(_history(str(tmp_path / "b.sqlite"), ops)) == served


def test_rows_after_a_hole_restart_the_tail() -> None:
    tail = tail_module.Tail(0)
    tail.add(1, 2, [_row(1), _row(2)], [])
    tail.add(5, 5, [_row(5)], [])  # 3 and 4 were stored without the tail seeing them
    assert tail.read(2, 10) is None
    assert tail.read(0, 10) is None
    got = tail.read(4, 10)
    assert got is not None
    assert [r[0] for r in got.readings] == [5]


def _row(seq: int) -> tuple[Any, ...]:
    return (seq, *rows_of([reading(seq)])[0])


def test_a_history_of_small_reads_is_answered_from_the_tail(tmp_path: Path) -> None:
    ops = [("accept", 10, 1), ("read", 0, 3), ("read", 1, 40), ("read", 0, 40)] * 5
    served = asyncio.run(_history(str(tmp_path / "b.sqlite"), ops))
    assert served == 15  # every read: each sink keeps up


@pytest.mark.asyncio
async def test_a_caught_up_sink_reads_nothing_from_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _DatabaseReads(monkeypatch)
    async with await Buffer.open(str(tmp_path / "b.sqlite"), CFG, Metrics()) as buf:
        pos = await buf.register_sink("influx")
        for i in range(20):
            await buf.accept([reading(10 * i + k) for k in range(10)], [event(i)])
            got = await buf.read("influx", pos, 1000)
            assert [r[0] for r in got.readings] == list(range(pos + 1, pos + 11))
            assert [e[0] for e in got.events] == [pos + 11]
            pos = got.upto
        assert reads.calls == 0
        assert len(buf._reads.tail) <= 11  # what the sink has read is forgotten


@pytest.mark.asyncio
async def test_concentrator_rows_and_events_come_back_as_the_database_gives_them(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "b.sqlite")
    async with await Buffer.open(path, CFG, Metrics()) as buf:
        await buf.register_sink("influx")
        for seq in (1, 2):
            raw = encode(payload_batch(seq=seq, meters=3, points=4, base=10 * seq))
            d = decode_message("meters/v1/c1/readings", raw, 1_000 + seq)
            await buf.submit(message_job("meters/v1/c1/readings", raw, 1_000 + seq, d))
        job = WriteJob(rows=rows_of([reading(7)]), events=[event(1)])
        await buf.submit(job)
        from_tail = buf._reads.tail.read(0, 100)
        assert from_tail is not None
        assert len(from_tail.readings) == 25
        check = connect_reader(path)
        try:
            assert _typed(from_tail) == _typed(reads_module._read_batch(check, 0, 100))
        finally:
            check.close()


@pytest.mark.asyncio
async def test_a_sink_behind_the_tail_and_a_reader_not_registered_read_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tail_module, "TAIL_ROWS", 50)
    reads = _DatabaseReads(monkeypatch)
    async with await Buffer.open(str(tmp_path / "b.sqlite"), CFG, Metrics()) as buf:
        await buf.register_sink("influx")
        await buf.register_sink("mqtt")
        for i in range(10):
            await buf.accept([reading(20 * i + k) for k in range(20)])
        assert len(buf._reads.tail) == 0  # nobody could use it: its memory is given back
        got = await buf.read("influx", 0, 1000)
        assert reads.calls == 1
        assert got.upto == 200
        for i in range(10, 12):
            await buf.accept([reading(20 * i + k) for k in range(20)])
        assert (buf._reads.tail.lo, buf._reads.tail.hi) == (201, 240)
        got = await buf.read("influx", 200, 1000)
        assert got.upto == 240
        assert reads.calls == 1
        await buf.accept([reading(240 + k) for k in range(20)])
        # What "influx" read is gone; "mqtt", still at 0 behind the tail, pins nothing.
        assert (buf._reads.tail.lo, buf._reads.tail.hi) == (241, 260)
        for i in range(13, 15):  # 40 more rows: "influx" falls more than the bound behind
            await buf.accept([reading(20 * i + k) for k in range(20)])
        assert len(buf._reads.tail) == 0
        got = await buf.read("influx", 240, 1000)
        assert got.upto == 300
        assert reads.calls == 2
        await buf.accept([reading(300)])
        got = await buf.read("influx", 300, 1000)
        assert got.upto == 301
        assert reads.calls == 2
        await buf.read("check", 300, 1000)
        assert reads.calls == 3


@pytest.mark.asyncio
async def test_the_cap_empties_the_tail_so_no_dropped_row_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "MAINTAIN_EVERY_S", 0.0)
    cfg = BufferConfig(commit_interval=0.0, commit_max_rows=5000, max_bytes=400_000)
    async with await Buffer.open(str(tmp_path / "b.sqlite"), cfg, Metrics()) as buf:
        await buf.register_sink("influx")
        i = 0
        while buf.stats().dropped == 0:
            await buf.accept([reading(i + k) for k in range(500)])
            i += 500
        assert len(buf._reads.tail) == 0
        assert buf._reads.tail.read(0, 10) is None
        got = await buf.read("influx", 0, 1_000_000)
    kinds = [e[1] for e in got.events]
    assert kinds == ["buffer_cap_dropped"]
    assert got.readings[0][0] > buf.stats().dropped  # the oldest rows are gone
    assert got.upto == buf.head_seq


@pytest.mark.asyncio
async def test_a_stalled_sink_holds_no_rows_until_it_reads_again(tmp_path: Path) -> None:
    async with await Buffer.open(str(tmp_path / "b.sqlite"), CFG, Metrics()) as buf:
        await buf.register_sink("influx")
        await buf.accept([reading(k) for k in range(10)])
        got = await buf.read("influx", 0, 5)
        assert len(buf._reads.tail) == 10
        buf.stalled("influx")  # its write of 1..5 failed
        assert len(buf._reads.tail) == 0
        await buf.accept([reading(k) for k in range(10, 20)])
        assert len(buf._reads.tail) == 0
        got = await buf.read("influx", got.upto, 100)  # it works again: 6..20 from disk
        assert got.upto == 20
        await buf.accept([reading(20)])
        assert len(buf._reads.tail) == 1
        assert buf._reads.tail.read(20, 100) is not None
