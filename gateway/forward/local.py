"""Local sink: readings kept queryable on the box (``metergw query``).

A separate SQLite file (``local.sqlite`` beside the buffer), keyed by the
point identity ``(meter, key, ts_ms)``, so a replayed batch overwrites rather
than duplicates, exactly as in a TSDB. Readings older than ``retention`` (by
their own timestamp) are deleted as new ones arrive. Its own file keeps the
buffer's single writer uncontended and lets retention differ from delivery.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pydantic import Field

from gateway.buffer import Batch
from gateway.config.base import ConfigPath, Duration
from gateway.config.model import Config
from gateway.config.northbound import SinkSection
from gateway.forward.sink import SinkUnavailable, WriteResult
from gateway.metrics import Metrics

_DDL = (
    """CREATE TABLE IF NOT EXISTS local_readings (
        meter TEXT NOT NULL, key TEXT NOT NULL, ts_ms INTEGER NOT NULL,
        value TEXT NOT NULL, unit TEXT NOT NULL, quality INTEGER NOT NULL,
        source TEXT NOT NULL, received_ms INTEGER NOT NULL, interval_s INTEGER,
        PRIMARY KEY (meter, key, ts_ms)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS local_readings_ts ON local_readings(ts_ms)",
    """CREATE TABLE IF NOT EXISTS local_events (
        kind TEXT NOT NULL, subject TEXT NOT NULL, ts_ms INTEGER NOT NULL,
        reason TEXT NOT NULL, detail TEXT NOT NULL,
        PRIMARY KEY (kind, subject, ts_ms)) WITHOUT ROWID""",
)
RETENTION_EVERY_S = 60.0


class LocalSinkConfig(SinkSection):
    """``[sinks.local]``: readings kept queryable on the box (``metergw query``)."""

    path: ConfigPath | None = None
    """Database file; defaults to ``{gateway.state_dir}/local.sqlite``."""
    retention: Duration = 7 * 86400.0
    """Readings older than this (by their own timestamp) are deleted."""
    batch_size: int = Field(default=5000, gt=0)
    flush_interval: Duration = 0.5


def local_path(config: Config) -> str:
    """Where the local readings live for this config."""
    local = config.sinks.section("local", LocalSinkConfig)
    if local is not None and local.path:
        return local.path
    return f"{config.gateway.state_dir}/local.sqlite"


def open_local(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the local readings database (creating the schema unless ``readonly``)."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=5000")
        return conn
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # the buffer cursor moves once this commit returns
    conn.execute("PRAGMA busy_timeout=5000")
    for statement in _DDL:
        conn.execute(statement)
    return conn


@dataclass(frozen=True, slots=True)
class LocalRow:
    """One reading as ``metergw query`` shows it."""

    meter: str
    key: str
    ts_ms: int
    value: str
    unit: str
    quality: int
    source: str


def query_readings(
    conn: sqlite3.Connection, meter: str, since_ms: int, key: str | None = None
) -> list[LocalRow]:
    """Readings of ``meter`` (its id, or just its address) since ``since_ms``, oldest first."""
    sql = (
        "SELECT meter, key, ts_ms, value, unit, quality, source FROM local_readings "
        "WHERE (meter = ? OR meter LIKE ?) AND ts_ms >= ?"
    )
    args: list[object] = [meter, f"%:{meter}", since_ms]
    if key is not None:
        sql += " AND key = ?"
        args.append(key)
    sql += " ORDER BY ts_ms, meter, key"
    return [LocalRow(*row) for row in conn.execute(sql, args)]


class LocalSink:
    """Writes batches into ``local.sqlite`` (one transaction per batch)."""

    def __init__(self, config: LocalSinkConfig, path: str, name: str = "local") -> None:
        self.name = name
        self.batch_size = config.batch_size
        self.flush_interval = config.flush_interval
        self.path = path
        self._retention_ms = int(config.retention * 1000)
        self._conn: sqlite3.Connection | None = None
        self._last_retention = 0.0

    @classmethod
    def from_config(cls, section: LocalSinkConfig, config: Config, metrics: Metrics) -> Self:
        """The sink of a ``[sinks.local]`` section (its file defaults to the state dir)."""
        return cls(section, local_path(config))

    def _write(self, batch: Batch) -> None:
        if self._conn is None:
            self._conn = open_local(self.path)
        c, rows = self._conn, batch.readings
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany(
                "INSERT OR REPLACE INTO local_readings VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (meter, key, ts, value, unit, q, source, recv, interval)
                    for _, meter, key, value, unit, ts, _, recv, source, q, interval in rows
                ],
            )
            c.executemany(
                "INSERT OR REPLACE INTO local_events VALUES (?,?,?,?,?)",
                [(k, subj, ts, reason, d) for _s, k, ts, subj, reason, d in batch.events],
            )
            if time.monotonic() - self._last_retention > RETENTION_EVERY_S:
                self._last_retention = time.monotonic()
                cutoff = time.time_ns() // 1_000_000 - self._retention_ms
                c.execute("DELETE FROM local_readings WHERE ts_ms < ?", (cutoff,))
                c.execute("DELETE FROM local_events WHERE ts_ms < ?", (cutoff,))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    async def write(self, batch: Batch) -> WriteResult:
        """Store the batch; a failing disk is transient (retried, nothing skipped)."""
        try:
            await asyncio.to_thread(self._write, batch)
        except (sqlite3.Error, OSError) as exc:
            raise SinkUnavailable(f"local store {self.path}: {exc}", None, "io") from None
        return WriteResult(len(batch))

    async def close(self) -> None:
        """Close the database."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
