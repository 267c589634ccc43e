"""The sinks' side of the buffer: where each sink reads its next batch from.

A registered sink that keeps up gets the rows just committed from memory (the
:class:`~gateway.buffer.tail.Tail`); every other read goes to SQLite on the sink's
own read-only connection, in a worker thread (WAL lets it read while the writer
commits), and gets the same batch.
"""

from __future__ import annotations

import asyncio
import sqlite3

from gateway.buffer.rows import Batch, EventRow, ReadingRow
from gateway.buffer.schema import connect_reader
from gateway.buffer.tail import Tail
from gateway.buffer.writer import Applied, BufferWriter
from gateway.metrics import Metrics

_READ_READINGS = (
    "SELECT seq, meter, key, value, unit, ts_ms, ts_source, received_ms, source, quality, "
    "interval_s FROM readings WHERE seq > ? ORDER BY seq LIMIT ?"
)
_READ_EVENTS = (
    "SELECT seq, kind, ts_ms, subject, reason, detail FROM events "
    "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)


def _read_batch(conn: sqlite3.Connection, after: int, limit: int) -> Batch:
    """Rows after ``after`` from one consistent snapshot (one read transaction)."""
    conn.execute("BEGIN")
    try:
        readings: list[ReadingRow] = conn.execute(_READ_READINGS, (after, limit)).fetchall()
        upper = readings[-1][0] if len(readings) == limit else 2**63 - 1
        events: list[EventRow] = conn.execute(_READ_EVENTS, (after, upper, limit)).fetchall()
    finally:
        conn.execute("COMMIT")
    if len(events) == limit and events[-1][0] < upper:
        upper = events[-1][0]
        readings = [r for r in readings if r[0] <= upper]
    if upper == 2**63 - 1:
        upper = max(readings[-1][0] if readings else after, events[-1][0] if events else after)
    return Batch(readings, events, upper)


class SinkReads:
    """Batches for the sinks, from memory or from disk, and where each sink stands."""

    def __init__(self, writer: BufferWriter, metrics: Metrics) -> None:
        self._writer = writer
        self._metrics = metrics
        self.tail = Tail(writer.head_seq)
        self.oldest_unsent: dict[str, int | None] = {}
        """Sink -> receive time of the oldest reading in its last batch (for ``/status``)."""
        self._conns: dict[str, sqlite3.Connection] = {}
        self._read_upto: dict[str, int] = {}
        """Sink -> the last sequence it read (what the tail may forget once all have)."""
        self._stalled: set[str] = set()
        """Sinks whose last write failed: the tail keeps nothing for them."""

    def committed(self, applied: Applied) -> None:
        """A group commit landed: keep its rows for the sinks that keep up."""
        if applied.dropped:
            # The cap deleted rows the tail may hold, and stored its event after them.
            self.tail.clear(self._writer.head_seq)
        else:
            self.tail.add(applied.first, applied.last, applied.readings, applied.events)
            self.tail.trim(self._positions())

    def _positions(self) -> dict[str, int]:
        """Registered sink -> the last sequence it read (its cursor before its first read),
        for the sinks that are not stalled."""
        upto, stalled = self._read_upto, self._stalled
        return {s: upto.get(s, c) for s, c in self._writer.cursors.items() if s not in stalled}

    def stalled(self, sink: str) -> None:
        """``sink``'s write failed: keep no rows in memory for it until it reads again (a
        sink that is down would otherwise hold the tail at its bound for nothing)."""
        self._stalled.add(sink)
        self.tail.trim(self._positions())

    async def read(self, sink: str, after: int, limit: int) -> Batch:
        """Up to ``limit`` readings (and the events among them) after sequence ``after``."""
        registered = sink in self._writer.cursors
        batch = self.tail.read(after, limit) if registered else None
        if batch is None:
            conn = self._conns.get(sink)
            if conn is None:
                conn = self._conns[sink] = await asyncio.to_thread(
                    connect_reader, self._writer.path
                )
            batch = await asyncio.to_thread(_read_batch, conn, after, limit)
            if registered:
                self._metrics.buffer_reads.labels(sink=sink, source="disk").inc()
        else:
            self._metrics.buffer_reads.labels(sink=sink, source="memory").inc()
        if registered:
            self._read_upto[sink] = batch.upto
            self._stalled.discard(sink)
        self.oldest_unsent[sink] = batch.oldest_received_ms
        return batch

    def close(self) -> None:
        """Close every reader connection."""
        for conn in self._conns.values():
            conn.close()
