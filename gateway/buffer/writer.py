"""The writing side of the buffer: runs only on the buffer's writer thread.

Everything here is synchronous SQLite work on the one writer connection. The
asyncio side (:mod:`gateway.buffer.store`) hands it groups of jobs; each group
is one transaction, so one fsync covers every job in it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import orjson

from gateway.buffer.jobs import Outcome, WriteJob
from gateway.buffer.rows import EventRow, GapRow, ReadingRow, Reference
from gateway.buffer.schema import BufferError
from gateway.model import Event, EventKind

MAINTAIN_EVERY_S = 1.0
"""How often pruning and the disk-cap check run (they need a few queries each)."""
PRUNE_CHUNK = 200_000
"""Most rows deleted per maintenance pass, so a long catch-up never stalls commits."""
CAP_TARGET = 0.9
"""Past ``max_bytes``, drop oldest rows until the data fits in this share of it."""
QUARANTINE_PAYLOAD_MAX = 64 * 1024
"""Bytes of a rejected payload kept for inspection."""
GAP_KEEP_MS = 90 * 86_400_000
"""Finished gaps (filled, partly filled, unrecoverable) stay in the ledger this long."""
GAP_PRUNE_EVERY_S = 3600.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


INSERT_CHUNK = 256
"""Most rows per INSERT statement. SQLite keeps each compiled statement (about 0.5 MB
at 256 rows of 11 parameters), so the chunk stays modest."""
_COLUMNS = 11
_ROW_PARAMS = "(?,?,?,?,?,?,?,?,?,?,?)"
_insert_sql: dict[int, str] = {}


def _insert_readings(conn: sqlite3.Connection, params: list[object]) -> None:
    """Insert reading rows, given as one flat list of their column values.

    ``executemany`` gives up and retakes the GIL around every row's step: with the
    event loop busy decoding, each retake can wait a whole switch interval, and
    the group commit falls to a few thousand rows per second. One multi-row
    ``INSERT ... VALUES`` per up to :data:`INSERT_CHUNK` rows takes the GIL once
    per chunk instead. Chunk sizes are powers of two, so a handful of statements
    serve every group size (the connection caches them compiled). Values bind
    exactly as with ``executemany``.
    """
    done, total, size = 0, len(params) // _COLUMNS, INSERT_CHUNK
    while done < total:
        while size > total - done:
            size //= 2
        sql = _insert_sql.get(size)
        if sql is None:
            sql = _insert_sql[size] = "INSERT INTO readings VALUES " + ",".join(
                [_ROW_PARAMS] * size
            )
        conn.execute(sql, params[done * _COLUMNS : (done + size) * _COLUMNS])
        done += size


_SEEN = "SELECT 1 FROM seen WHERE scope=? AND key=?"
_ADD_META = (
    "INSERT INTO meta(name, value) VALUES (?, ?) "
    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value"
)
SEEN_KEEP = 100_000
"""Keys of stored messages kept to recognise a resend (the newest win). A broker resends
only what was unacknowledged, at most the ingest window, so this is ample."""
QUARANTINE_KEEP_PER_KIND = 1_000
"""Quarantine entries kept per (origin, reason kind): the newest of each."""

_DATA_ERRORS = (
    OverflowError,
    ValueError,
    TypeError,
    sqlite3.InterfaceError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
)
"""What a job's own content can raise while it is stored (an integer beyond 64 bits, a
value SQLite cannot bind, a constraint): that job is refused, the others commit."""


class JobDataError(BufferError):
    """Something in a job of the group could not be stored; the store itself is fine."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What one group commit stored: sequences ``first..last``, exactly these readings
    and events (as a reader would get them back), and the rows the cap dropped after it."""

    first: int
    last: int
    readings: list[ReadingRow]
    events: list[EventRow]
    dropped: int = 0


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


_UPSERT_REF = (
    "INSERT INTO refs(meter, key, ts_ms, value) VALUES (?,?,?,?) ON CONFLICT(meter, key) "
    "DO UPDATE SET ts_ms = excluded.ts_ms, value = excluded.value "
    "WHERE excluded.ts_ms >= refs.ts_ms"
)


_UPSERT_GAP = f"INSERT OR REPLACE INTO gaps VALUES ({','.join('?' * 19)})"


class BufferWriter:
    """Owns the writer connection and the state that only commits change."""

    def __init__(self, path: str, conn: sqlite3.Connection, max_bytes: int) -> None:
        self.path = path
        self.conn = conn
        self.max_bytes = max_bytes
        q = conn.execute
        heads = [
            q("SELECT max(seq) FROM readings").fetchone()[0],
            q("SELECT max(seq) FROM events").fetchone()[0],
            q("SELECT value FROM meta WHERE name='head'").fetchone(),
            q("SELECT max(seq) FROM cursors").fetchone()[0],
        ]
        head = max(int(h[0] if isinstance(h, tuple) else h) for h in [*heads, 0] if h is not None)
        self.head_seq = head
        oldest = [
            q("SELECT min(seq) FROM readings").fetchone()[0],
            q("SELECT min(seq) FROM events").fetchone()[0],
        ]
        self.oldest_seq = min((int(o) for o in oldest if o is not None), default=head + 1)
        self.rows = int(q("SELECT count(*) FROM readings").fetchone()[0]) + int(
            q("SELECT count(*) FROM events").fetchone()[0]
        )
        self.cursors: dict[str, int] = {
            str(s): int(c) for s, c in q("SELECT sink, seq FROM cursors").fetchall()
        }
        self.marks: dict[str, tuple[int, int]] = {
            str(g): (int(s), int(t)) for g, s, t in q("SELECT gw, seq, ts_ms FROM concentrators")
        }
        """Concentrator id -> (seq, batch time) of its newest stored message."""
        dropped = q("SELECT value FROM meta WHERE name='dropped'").fetchone()
        self.dropped = int(dropped[0]) if dropped else 0
        repeats = q("SELECT value FROM meta WHERE name='repeats'").fetchone()
        self.repeats = int(repeats[0]) if repeats else 0
        self.seen = int(q("SELECT count(*) FROM seen").fetchone()[0])
        self.quarantined = int(q("SELECT count(*) FROM quarantine").fetchone()[0])
        self._quarantine_checked = 0
        self.commits = 0
        self.bytes = self._file_bytes()
        self._last_maintain = 0.0
        self._gaps_pruned = 0.0

    # -- group commit ------------------------------------------------------------------

    def apply(self, jobs: Sequence[WriteJob]) -> Applied:
        """Store every job in one transaction; return what it stored.

        On failure the transaction is rolled back, nothing of the group is stored, and
        :class:`JobDataError` (something in a job could not be stored: the caller retries
        the jobs alone to find it) or :class:`BufferError` (the store itself failed) is
        raised: no caller may treat its data as accepted.
        """
        try:
            return self._apply(jobs)
        except BufferError:
            raise
        except _DATA_ERRORS as exc:
            self._rollback()
            raise JobDataError(f"buffer {self.path}: cannot store: {_describe(exc)}") from None
        except Exception as exc:  # sqlite3.OperationalError (disk full, I/O) and the unforeseen
            self._rollback()
            raise BufferError(f"buffer {self.path}: commit failed: {_describe(exc)}") from None

    def _apply(self, jobs: Sequence[WriteJob]) -> Applied:
        first = seq = self.head_seq
        c = self.conn
        # The rows as a reader gets them back (seq first); the forwarders' tail keeps them.
        rows: list[ReadingRow] = []
        add = rows.append
        event_rows: list[EventRow] = []
        quarantine_rows: list[tuple[object, ...]] = []
        mark_rows: dict[str, tuple[int, int]] = {}
        seen_rows: list[tuple[str, bytes, int]] = []
        seen_now: set[tuple[str, bytes]] = set()
        cursors = dict(self.cursors)
        refs: list[Reference] = []
        gaps: list[GapRow] = []
        repeats = 0
        now = _now_ms()
        c.execute("BEGIN IMMEDIATE")
        for job in jobs:
            job.outcome = Outcome.ACCEPTED
            refs.extend(job.refs)  # kept even when the job's message is a repeat
            if job.once is not None:
                if job.once in seen_now or c.execute(_SEEN, job.once).fetchone() is not None:
                    job.outcome = Outcome.DUPLICATE
                    repeats += 1
                else:
                    seen_now.add(job.once)
                    seen_rows.append((*job.once, now))
            if job.outcome is Outcome.ACCEPTED:
                gaps.extend(job.gaps)  # a repeat's message changed no gap
                if job.mark is not None:
                    mark_rows[job.mark.gw] = (job.mark.seq, job.mark.ts_ms)
                for values in job.rows:
                    seq += 1
                    add((seq, *values))
            for e in job.stored_events:
                seq += 1
                detail = orjson.dumps(dict(e.detail))
                event_rows.append((seq, e.kind.value, e.ts_ms, e.subject, e.reason, detail))
            for qe in job.quarantine:
                quarantine_rows.append(
                    (
                        now,
                        qe.origin,
                        qe.subject,
                        qe.seq,
                        qe.reason,
                        qe.payload[:QUARANTINE_PAYLOAD_MAX],
                        qe.kind,
                    )
                )
            if job.cursor is not None:
                sink, upto = job.cursor
                cursors[sink] = max(cursors.get(sink, upto), upto)
        if rows:
            _insert_readings(c, list(chain.from_iterable(rows)))
        if event_rows:
            c.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", event_rows)
        if quarantine_rows:
            c.executemany(
                "INSERT INTO quarantine(ts_ms, origin, subject, seq, reason, payload, kind) "
                "VALUES (?,?,?,?,?,?,?)",
                quarantine_rows,
            )
        if mark_rows:
            c.executemany(
                "INSERT OR REPLACE INTO concentrators(gw, seq, ts_ms) VALUES (?,?,?)",
                [(g, s, t) for g, (s, t) in mark_rows.items()],
            )
        if seen_rows:
            c.executemany("INSERT INTO seen(scope, key, ts_ms) VALUES (?,?,?)", seen_rows)
            self.seen += len(seen_rows)
        if repeats:
            c.execute(_ADD_META, ("repeats", repeats))
        if refs:
            c.executemany(_UPSERT_REF, refs)
        if gaps:
            c.executemany(_UPSERT_GAP, gaps)
        moved = [(s, v) for s, v in cursors.items() if self.cursors.get(s) != v]
        if moved:
            c.executemany("INSERT OR REPLACE INTO cursors(sink, seq) VALUES (?,?)", moved)
        c.execute("COMMIT")
        self.head_seq = seq
        self.marks.update(mark_rows)
        self.cursors = cursors
        self.repeats += repeats
        self.rows += len(rows) + len(event_rows)
        self.quarantined += len(quarantine_rows)
        self.commits += 1
        dropped = 0
        if time.monotonic() - self._last_maintain >= MAINTAIN_EVERY_S:
            dropped = self.maintain()
        return Applied(first + 1, seq, rows, event_rows, dropped)

    def _rollback(self) -> None:
        # No transaction may be open when the BEGIN itself failed.
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")

    # -- sinks -------------------------------------------------------------------------

    def behind(self, cursor: int, upto: int | None = None) -> int:
        """Rows a sink at ``cursor`` has still to send up to ``upto`` (the head), counting
        only rows still held: the cap may have dropped the oldest."""
        head = self.head_seq if upto is None else upto
        return max(0, head - max(cursor, self.oldest_seq - 1))

    def register_sink(self, sink: str) -> int:
        """Give ``sink`` a cursor (a new sink starts at the oldest row held)."""
        if sink not in self.cursors:
            start = self.oldest_seq - 1
            try:
                self.conn.execute("INSERT INTO cursors(sink, seq) VALUES (?, ?)", (sink, start))
            except sqlite3.Error as exc:
                raise BufferError(
                    f"buffer {self.path}: cannot register sink {sink}: {exc}"
                ) from None
            self.cursors[sink] = start
        return self.cursors[sink]

    def forget_sink(self, sink: str) -> None:
        """Remove a sink's cursor, so that it no longer holds rows back."""
        try:
            self.conn.execute("DELETE FROM cursors WHERE sink=?", (sink,))
        except sqlite3.Error as exc:
            raise BufferError(f"buffer {self.path}: cannot forget sink {sink}: {exc}") from None
        self.cursors.pop(sink, None)

    # -- retention ---------------------------------------------------------------------

    def maintain(self) -> int:
        """Delete rows every sink has passed; enforce ``max_bytes``. Return rows dropped."""
        self._last_maintain = time.monotonic()
        dropped = 0
        try:
            if self.cursors:
                done = min(self.cursors.values())
                if done >= self.oldest_seq:
                    self._delete_upto(min(done, self.oldest_seq + PRUNE_CHUNK - 1))
            used = self._used_bytes()
            if used > self.max_bytes and self.rows > 0:
                dropped = self._drop_oldest(used)
            if self.quarantined > self._quarantine_checked + QUARANTINE_KEEP_PER_KIND // 10:
                self._trim_quarantine()
            if time.monotonic() - self._gaps_pruned >= GAP_PRUNE_EVERY_S or not self._gaps_pruned:
                self._gaps_pruned = time.monotonic()
                self.conn.execute(
                    "DELETE FROM gaps WHERE state NOT IN ('open', 'filling') AND updated_ms < ?",
                    (_now_ms() - GAP_KEEP_MS,),
                )
            if self.seen > SEEN_KEEP * 1.1:
                self.conn.execute(
                    "DELETE FROM seen WHERE id <= (SELECT max(id) FROM seen) - ?", (SEEN_KEEP,)
                )
                self.seen = int(self.conn.execute("SELECT count(*) FROM seen").fetchone()[0])
        except sqlite3.Error as exc:
            self._rollback()
            raise BufferError(f"buffer {self.path}: maintenance failed: {exc}") from None
        self.bytes = self._file_bytes()
        return dropped

    def _trim_quarantine(self) -> None:
        """Keep the newest entries of each (origin, kind), so rare rejects survive a flood."""
        self.conn.execute(
            "DELETE FROM quarantine WHERE id IN (SELECT id FROM (SELECT id, row_number() "
            "OVER (PARTITION BY origin, kind ORDER BY id DESC) AS n FROM quarantine) "
            "WHERE n > ?)",
            (QUARANTINE_KEEP_PER_KIND,),
        )
        self.quarantined = int(self.conn.execute("SELECT count(*) FROM quarantine").fetchone()[0])
        self._quarantine_checked = self.quarantined

    def _delete_upto(self, upto: int, event: Event | None = None) -> int:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        n = c.execute("DELETE FROM readings WHERE seq <= ?", (upto,)).rowcount
        n += c.execute("DELETE FROM events WHERE seq <= ?", (upto,)).rowcount
        # Remember the head so that sequences never go back, even with every row gone.
        c.execute("INSERT OR REPLACE INTO meta(name, value) VALUES ('head', ?)", (self.head_seq,))
        if event is not None:
            self.dropped += n
            c.execute(
                "INSERT OR REPLACE INTO meta(name, value) VALUES ('dropped', ?)", (self.dropped,)
            )
            self.head_seq += 1
            c.execute(
                "INSERT INTO events VALUES (?,?,?,?,?,?)",
                (
                    self.head_seq,
                    event.kind.value,
                    event.ts_ms,
                    event.subject,
                    event.reason,
                    orjson.dumps({**event.detail, "rows": n}),
                ),
            )
            self.rows += 1
        c.execute("COMMIT")
        self.rows -= n
        self.oldest_seq = upto + 1
        return n

    def _drop_oldest(self, used: int) -> int:
        share = (used - self.max_bytes * CAP_TARGET) / used
        k = max(1, math.ceil(self.rows * share))
        row = self.conn.execute(
            "SELECT seq FROM readings ORDER BY seq LIMIT 1 OFFSET ?", (k - 1,)
        ).fetchone()
        upto = int(row[0]) if row else self.head_seq
        behind = {s: self.behind(c, upto) for s, c in self.cursors.items()}
        event = Event(
            EventKind.BUFFER_CAP_DROPPED,
            _now_ms(),
            "buffer",
            f"disk budget of {self.max_bytes} bytes reached: dropped the oldest rows "
            f"up to seq {upto}",
            {
                "path": self.path,
                "max_bytes": self.max_bytes,
                "used_bytes": used,
                "first_seq": self.oldest_seq,
                "last_seq": upto,
                **{f"undelivered_{s}": n for s, n in behind.items()},
            },
        )
        return self._delete_upto(upto, event)

    def _used_bytes(self) -> int:
        q = self.conn.execute
        pages = int(q("PRAGMA page_count").fetchone()[0]) - int(
            q("PRAGMA freelist_count").fetchone()[0]
        )
        return pages * int(q("PRAGMA page_size").fetchone()[0])

    def _file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(self.path + suffix)
        return total

    def close(self) -> None:
        # A busy reader keeps the log; the next open replays it.
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()
