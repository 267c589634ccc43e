"""What the buffer does with a job it cannot store, with repeats, and with its quarantine."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.buffer import Buffer, BufferError, ConcentratorMark, Outcome, QuarantineEntry, WriteJob
from gateway.buffer import schema as schema_module
from gateway.buffer import writer as writer_module
from gateway.config.northbound import BufferConfig
from gateway.metrics import Metrics
from gateway.model import Event, EventKind
from tests.gateway.buffer.factory import T0, reading

pytestmark = pytest.mark.asyncio

CFG = BufferConfig(commit_max_rows=1000)
TOPIC = "meters/v1/c1/readings"


def row(
    n: int, ts_ms: int | None = None
) -> tuple[str, str, str, str, int, str, int, str, int, None]:
    return (
        "dlt645-2007:1",
        "voltage_l1_v",
        f"{n}.5",
        "V",
        T0 + n if ts_ms is None else ts_ms,
        "concentrator",
        T0,
        TOPIC,
        0,
        None,
    )


def message(seq: int, *rows: tuple[object, ...], key: bytes | None = None) -> WriteJob:
    return WriteJob(
        rows=list(rows),  # type: ignore[arg-type]
        mark=ConcentratorMark("c1", seq, T0, TOPIC),
        once=("c1", key if key is not None else seq.to_bytes(8, "big")),
        origin="ingest",
        subject=TOPIC,
    )


async def test_a_job_sqlite_cannot_hold_is_refused_alone_and_the_rest_commit(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "b.sqlite")
    metrics = Metrics()
    async with await Buffer.open(path, CFG, metrics) as buf:
        # Submitted together, so they share one group commit: the poison job (an integer
        # beyond 64 bits) must not take its neighbours down, nor leave a transaction open.
        futures = [
            buf.submit(message(1, row(1))),
            buf.submit(message(2, row(2, ts_ms=10**30))),
            buf.submit(message(3, row(3))),
        ]
        jobs = await asyncio.gather(*futures)
        assert [j.outcome for j in jobs] == [Outcome.ACCEPTED, Outcome.REJECTED, Outcome.ACCEPTED]
        assert "too large" in jobs[1].reason
        assert buf.healthy
        # Later commits work: the failed transaction was rolled back.
        assert (await buf.submit(message(4, row(4)))).outcome is Outcome.ACCEPTED
        batch = await buf.read("s", 0, 100)
    assert [r[3] for r in batch.readings] == ["1.5", "3.5", "4.5"]
    assert [(e[1], e[3]) for e in batch.events] == [("payload_rejected", TOPIC)]
    conn = sqlite3.connect(path)
    (origin, subject, reason, kind, payload) = conn.execute(
        "SELECT origin, subject, reason, kind, payload FROM quarantine"
    ).fetchone()
    assert (origin, subject, kind) == ("ingest", TOPIC, "unstorable")
    assert reason.startswith("not storable:")
    assert str(10**30).encode() in payload  # the refused content is kept for inspection
    assert (
        metrics.registry.get_sample_value(
            "metergw_quarantined_total", {"origin": "ingest", "reason": "unstorable"}
        )
        == 1
    )


async def test_a_repeated_key_stores_only_its_repeat_events_and_is_counted_for_good(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "b.sqlite")
    repeat = Event(EventKind.MESSAGE_REPEATED, T0, "c1", "seq 1 again")
    metrics = Metrics()
    async with await Buffer.open(path, CFG, metrics) as buf:
        first = message(1, row(1))
        assert (await buf.submit(first)).outcome is Outcome.ACCEPTED
        again = message(1, row(1))
        again.repeat_events = [repeat]
        # Two repeats in one group: the first of the group is compared with the store,
        # the second with the first.
        jobs = await asyncio.gather(buf.submit(again), buf.submit(message(1, row(1))))
        assert [j.outcome for j in jobs] == [Outcome.DUPLICATE, Outcome.DUPLICATE]
        # A new key with the same seq (a concentrator that restarted) is data, not a repeat.
        assert (await buf.submit(message(1, row(9), key=b"other"))).outcome is Outcome.ACCEPTED
        assert buf.stats().repeats == 2
    assert metrics.registry.get_sample_value("metergw_messages_repeated_total") == 2
    async with await Buffer.open(path, CFG, Metrics()) as buf:
        assert (await buf.submit(message(1, row(1)))).outcome is Outcome.DUPLICATE
        assert buf.stats().repeats == 3
        assert buf.marks() == {"c1": (1, T0)}
        batch = await buf.read("s", 0, 100)
    assert [r[3] for r in batch.readings] == ["1.5", "9.5"]
    assert [(e[1], e[4]) for e in batch.events] == [("message_repeated", "seq 1 again")]


async def test_repeats_are_found_anywhere_in_large_groups(tmp_path: Path) -> None:
    """A group of 1,203 jobs under two scopes, with stored keys scattered through it:
    exactly the stored ones are repeats, whatever their place in the group."""
    stored = {0, 1, 499, 500, 501, 1000, 1200}

    def job(n: int, scope: str) -> WriteJob:
        j = message(n, row(n))
        j.once = (scope, n.to_bytes(8, "big"))
        j.mark = ConcentratorMark(scope, n, T0, TOPIC)
        return j

    async with await Buffer.open(str(tmp_path / "b.sqlite"), CFG, Metrics()) as buf:
        for n in sorted(stored):
            assert (await buf.submit(job(n, "c1"))).outcome is Outcome.ACCEPTED
        await buf.submit(job(1, "c2"))  # the same key under another scope is another message
        group = [job(n, "c1") for n in range(1201)] + [job(1, "c2"), job(2, "c2")]
        before = buf.stats().commits
        done = await asyncio.gather(*(buf.submit(j) for j in group))
        repeated = [(j.once[0], n) for n, j in enumerate(done) if j.outcome is Outcome.DUPLICATE]
        # In a few groups (commit_max_rows), none retried job by job: a stored key the
        # check missed would fail its group on the unique index and hide behind the retry.
        assert buf.stats().commits - before <= 3
    assert repeated == [("c1", n) for n in sorted(stored)] + [("c2", 1201)]


async def test_a_failing_store_fails_every_caller_and_refuses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await Buffer.open(str(tmp_path / "b.sqlite"), CFG, Metrics()) as buf:
        real = buf._writer.conn
        # The store itself failing (not a job's content): nothing is quarantined.
        buf._writer.conn = sqlite3.connect(":memory:", check_same_thread=False)
        buf._writer.conn.execute("PRAGMA query_only=1")
        futures = [buf.submit(message(1, row(1))), buf.submit(message(2, row(2)))]
        for fut in futures:
            with pytest.raises(BufferError, match="commit failed"):
                await fut
        assert not buf.healthy
        buf._writer.conn.close()
        buf._writer.conn = real
        assert (await buf.submit(message(1, row(1)))).outcome is Outcome.ACCEPTED
        assert buf.healthy
        assert buf.stats().quarantined == 0


async def test_quarantine_keeps_the_newest_of_each_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "QUARANTINE_KEEP_PER_KIND", 20)
    monkeypatch.setattr(writer_module, "MAINTAIN_EVERY_S", 0.0)
    path = str(tmp_path / "b.sqlite")

    def entry(kind: str, n: int) -> QuarantineEntry:
        return QuarantineEntry("ingest", TOPIC, f"{kind} {n}", b"x", kind=kind)

    async with await Buffer.open(path, CFG, Metrics()) as buf:
        await buf.quarantine([entry("rare", 0), entry("rare", 1)])
        for n in range(10):  # a flood of one kind
            await buf.quarantine([entry("json", 10 * n + i) for i in range(10)])
        await buf.quarantine([entry("json", 1000)])
    conn = sqlite3.connect(path)
    kept = conn.execute("SELECT kind, reason FROM quarantine ORDER BY id").fetchall()
    assert [r for k, r in kept if k == "rare"] == ["rare 0", "rare 1"]
    flood = [r for k, r in kept if k == "json"]
    assert 20 <= len(flood) <= 20 + 10 + 1  # trimmed every few entries, newest kept
    assert flood[-1] == "json 1000"
    assert "json 0" not in flood


async def test_a_version_1_buffer_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    v1_ddl = schema_module.DDL.replace(",\n    kind TEXT NOT NULL DEFAULT ''", "")
    v1_ddl = (
        v1_ddl[: v1_ddl.index("CREATE TABLE IF NOT EXISTS seen")]
        + v1_ddl[v1_ddl.index("CREATE TABLE IF NOT EXISTS refs") :]
    )
    conn = sqlite3.connect(path)
    conn.executescript(v1_ddl)
    conn.execute(
        "INSERT INTO readings VALUES (7, 'm', 'voltage_l1_v', '230.1', 'V', 1, 'poll', 2, 'b', 0,"
        " NULL)"
    )
    conn.execute("INSERT INTO quarantine(ts_ms, origin, subject, reason, payload) "
                 "VALUES (1, 'ingest', 't', 'old', x'00')")  # fmt: skip
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    async with await Buffer.open(str(path), CFG, Metrics()) as buf:
        assert buf.head_seq == 7
        assert (await buf.submit(message(1, row(1)))).outcome is Outcome.ACCEPTED
        batch = await buf.read("s", 0, 100)
    assert [r[0] for r in batch.readings] == [7, 8]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_module.SCHEMA_VERSION
    assert conn.execute("SELECT reason, kind FROM quarantine").fetchall() == [("old", "")]


async def test_a_dead_committer_fails_waiting_callers_and_wakes_its_watcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await Buffer.open(str(tmp_path / "b.sqlite"), CFG, Metrics()) as buf:
        watcher = asyncio.create_task(buf.watch())

        def broken(group: object) -> None:
            raise RuntimeError("a bug in the committer")

        monkeypatch.setattr(buf, "_commit", broken)
        fut = buf.submit(message(1, row(1)))
        with pytest.raises(RuntimeError, match="a bug in the committer"):
            await watcher
        with pytest.raises(BufferError, match="committer stopped"):
            await fut
        with pytest.raises(BufferError, match="committer stopped"):
            buf.submit(message(2, row(2)))
        monkeypatch.undo()


async def test_commits_start_at_once_without_waiting_for_a_timer(tmp_path: Path) -> None:
    # commit_interval is no floor: a lone job on an idle buffer commits immediately.
    slow = BufferConfig(commit_interval=30.0)
    async with await Buffer.open(str(tmp_path / "b.sqlite"), slow, Metrics()) as buf:
        async with asyncio.timeout(5):
            await buf.accept([reading(1)])
            await buf.accept([reading(2)])
        assert buf.stats().commits == 2
