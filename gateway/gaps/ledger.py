"""The gap ledger as the running gateway sees it, and reading it back from the buffer.

Rows are written by the buffer's writer thread, with the readings they concern
(``WriteJob.gaps``). :class:`GapLedger` is the in-memory view the status API and
the metrics read: the rows of active gaps and of recently finished ones, updated
when their write commits.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence

from gateway.buffer.schema import BufferError, connect_reader
from gateway.gaps.record import GAP_COLUMNS, GapRecord, GapState
from gateway.logs import get_logger
from gateway.metrics import Metrics

log = get_logger("gaps")

RECENT_MS = 7 * 86_400_000
"""Finished gaps stay in the view (``/status``) this long after their last change."""
SHOWN = 100
"""Most gaps listed in ``/status`` (active ones first)."""


def read_gaps(path: str, since_ms: int = 0) -> list[GapRecord]:
    """Active gaps, and finished ones changed since ``since_ms``, oldest first.

    Synchronous (a reader connection of its own); raise :class:`BufferError`.
    """
    try:
        conn = connect_reader(path)
    except sqlite3.Error as exc:
        raise BufferError(f"buffer {path}: cannot read the gap ledger: {exc}") from None
    try:
        rows = conn.execute(
            f"SELECT {GAP_COLUMNS} FROM gaps WHERE state IN ('open', 'filling') "
            "OR updated_ms >= ? ORDER BY start_ms, id",
            (since_ms,),
        ).fetchall()
    except sqlite3.Error as exc:
        raise BufferError(f"buffer {path}: cannot read the gap ledger: {exc}") from None
    finally:
        conn.close()
    return [GapRecord.from_row(r) for r in rows]


def file_gap(path: str, record: GapRecord) -> None:
    """Write one ledger row from outside the daemon (``metergw backfill`` while it runs):
    a short transaction of its own; the daemon finds the row (:func:`watch_filed`)."""
    try:
        conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise BufferError(f"buffer {path}: cannot open: {exc}") from None
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='gaps'").fetchone():
            raise BufferError(f"buffer {path}: has no gap ledger (start the gateway once)")
        columns = len(GAP_COLUMNS.split(","))
        conn.execute(
            f"INSERT OR REPLACE INTO gaps VALUES ({','.join('?' * columns)})", record.row()
        )
    except sqlite3.Error as exc:
        raise BufferError(f"buffer {path}: cannot file the backfill: {exc}") from None
    finally:
        conn.close()


async def load_gaps(path: str, since_ms: int = 0) -> list[GapRecord]:
    """:func:`read_gaps` off the event loop."""
    return await asyncio.to_thread(read_gaps, path, since_ms)


FILED_SCAN_S = 5.0
"""How often the daemon looks for backfills filed by ``metergw backfill``."""


async def watch_filed(
    path: str, take: Callable[[Sequence[GapRecord]], int], every: float = FILED_SCAN_S
) -> None:
    """Hand active gaps found in the ledger to ``take`` every ``every`` seconds (runs
    until cancelled): ``metergw backfill`` files a job there while the daemon runs.
    ``take`` ignores the gaps it already knows."""
    while True:
        await asyncio.sleep(every)
        try:
            rows = await load_gaps(path, since_ms=2**62)
        except BufferError as exc:
            log.warning("gap_ledger_unreadable", error=str(exc))
            continue
        if queued := take(rows):
            log.info("backfill_filed", gaps=queued)


class GapLedger:
    """Gaps by id, as last committed; keeps ``metergw_gaps{state}`` up to date."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self.gaps: dict[str, GapRecord] = {}
        self.claimed: set[str] = set()
        """Gaps a backfill of this run took on (their rows may not have committed yet)."""

    def known(self, gap_id: str) -> bool:
        """Whether this run already holds (or fills) the gap ``gap_id``."""
        return gap_id in self.gaps or gap_id in self.claimed

    def note(self, records: Iterable[GapRecord]) -> None:
        """Rows that were committed (or loaded at start)."""
        for rec in records:
            self.gaps[rec.id] = rec
        self._count()

    def active(self) -> list[GapRecord]:
        """Gaps still to fill (open or filling), oldest first."""
        return sorted((g for g in self.gaps.values() if g.state.active), key=lambda g: g.start_ms)

    def to_json(self, now_ms: int) -> dict[str, object]:
        """The ``gaps`` section of ``/status``: counts by state, then the gaps themselves
        (active ones and those finished in the last week, at most :data:`SHOWN`)."""
        shown = [
            g for g in self.gaps.values() if g.state.active or now_ms - g.updated_ms <= RECENT_MS
        ]
        shown.sort(key=lambda g: (not g.state.active, -g.updated_ms))
        counts = dict.fromkeys((s.value for s in GapState), 0)
        for g in self.gaps.values():
            counts[g.state.value] += 1
        return {"counts": counts, "gaps": [g.to_json() for g in shown[:SHOWN]]}

    def _count(self) -> None:
        if self.metrics is None:
            return
        counts = dict.fromkeys((s.value for s in GapState), 0)
        for g in self.gaps.values():
            counts[g.state.value] += 1
        for state, n in counts.items():
            self.metrics.gaps.labels(state).set(n)
