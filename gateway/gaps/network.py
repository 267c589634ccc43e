"""Concentrator seq gaps in the ledger: filed, counted as late messages come, closed.

A concentrator numbers its messages (``seq``). When a message's number jumps past the
next one, the messages in between did not come (docs/concentrator-schema.md): that is a
gap of cause ``concentrator_seq``, subject the concentrator. Its counter is its clock, so
the row's "meter span" (``meter_start_ms``, ``meter_end_ms``) holds the missing seq
numbers (start exclusive, end inclusive) and its counts are messages; ``start_ms`` and
``end_ms`` are the batch times of the messages on either side. ``todo_from_ms`` and
``todo_to_ms`` narrow to the numbers still missing (a message outside them came), so a
restart knows those that came before it.

A missing message that comes late (a concentrator's store-and-forward, a broker's
redelivery) is counted as recovered; when all have come the gap is ``filled``. One that
stays quiet for ``[ingest] seq_gap_wait`` after it opened or after the last late message
is closed ``partly_filled`` (some came) or ``unrecoverable`` (none came). A counter reset
closes the concentrator's gaps at once: their numbers now belong to the new count.

:class:`SeqGaps` holds the active gaps; its methods take the time and return rows and
events, and the callers (the ingest, the ``seq-gaps`` task) hand them to the write path
with the message that changes them. A row handed over counts from then on; a message
that turns out not stored (a repeat) is taken back with :meth:`SeqGaps.undo`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from gateway.buffer import JobStore, WriteJob
from gateway.gaps.ledger import GapLedger
from gateway.gaps.record import GapCause, GapRecord, GapState, gap_event
from gateway.logs import get_logger
from gateway.model import Event

log = get_logger("gaps")

SEQ_GAP_MAX = 100_000
"""The largest jump filed as a gap. A week of messages every 6 s; no broker queue or
concentrator store holds more. A larger jump (``seq`` 2^63-1 after 5) is a new count,
like a counter reset: a gap of 10^18 "expected" messages would only say the number is
wild, and would make every count and rate built on it meaningless."""
AGE_EVERY_S = 60.0
"""How often the ``seq-gaps`` task looks for gaps whose wait is over."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _span(first: int, last: int) -> str:
    return f"seq {first}..{last}" if last > first else f"seq {first}"


def seq_gap(gw: str, first: int, last: int, start_ms: int, end_ms: int, now_ms: int) -> GapRecord:
    """A new gap of concentrator ``gw``: seq ``first..last`` missing between its messages
    stamped ``start_ms`` and ``end_ms`` (its clock)."""
    return GapRecord(
        f"{gw}@{start_ms}#seq{first}",
        gw,
        GapCause.CONCENTRATOR_SEQ,
        (),
        start_ms,
        max(start_ms, end_ms),
        GapState.OPEN,
        0,
        last - first + 1,
        0,
        now_ms,
        first - 1,
        last,
        first - 1,
        last,
        reason=f"missing {_span(first, last)} ({last - first + 1} message(s))",
    )


class SeqGaps:
    """The active seq gaps of every concentrator; see the module docstring.

    One per daemon (the ingest is restarted by a reload, the gaps stay). ``ledger`` is
    told of rows once they committed (:meth:`committed`).
    """

    def __init__(self, wait_s: float = 3600.0, ledger: GapLedger | None = None) -> None:
        self.wait_ms = int(wait_s * 1000)
        self.ledger = ledger
        self._active: dict[str, GapRecord] = {}
        self._of: dict[str, set[str]] = {}
        """Active gap ids by concentrator: a step back looks at its own gaps only."""
        self._got: dict[str, set[int]] = {}
        """Late seqs counted inside each gap's still-missing span (this run)."""

    def take(self, records: Iterable[GapRecord]) -> int:
        """Hold the active concentrator gaps of ``records`` (the ledger at start); returns
        how many were new."""
        new = 0
        for rec in records:
            if rec.cause is GapCause.CONCENTRATOR_SEQ and rec.state.active:
                new += rec.id not in self._active
                self._put(rec)
        return new

    def active(self) -> list[GapRecord]:
        """The gaps still waiting for messages, oldest first."""
        return sorted(self._active.values(), key=lambda g: (g.updated_ms, g.id))

    def committed(self, records: Iterable[GapRecord]) -> None:
        """Rows that were stored: the ledger's view (``/status``, metrics) follows."""
        if self.ledger is not None:
            self.ledger.note(records)

    # -- changes -----------------------------------------------------------------------

    def open(
        self, gw: str, first: int, last: int, start_ms: int, end_ms: int, now_ms: int
    ) -> tuple[GapRecord, Event]:
        """File a gap (see :func:`seq_gap`): its row and its ``gap_opened`` event."""
        rec = seq_gap(gw, first, last, start_ms, end_ms, now_ms)
        self._put(rec)
        return rec, gap_event(rec, rec.reason, now_ms, seq_first=first, seq_last=last)

    def _put(self, rec: GapRecord) -> None:
        self._active[rec.id] = rec
        self._of.setdefault(rec.meter, set()).add(rec.id)

    def drop(self, gap_id: str) -> None:
        """Forget a gap (closed, or filed with a message that was not stored after all)."""
        rec = self._active.pop(gap_id, None)
        self._got.pop(gap_id, None)
        if rec is not None and (ids := self._of.get(rec.meter)) is not None:
            ids.discard(gap_id)
            if not ids:
                del self._of[rec.meter]

    def holding(self, gw: str, seq: int) -> GapRecord | None:
        """The active gap of ``gw`` still missing ``seq``, if any."""
        for gap_id in self._of.get(gw, ()):
            rec = self._active[gap_id]
            if rec.todo_from_ms < seq <= rec.todo_to_ms and seq not in self._got.get(gap_id, ()):
                return rec
        return None

    def arrived(self, gap_id: str, seq: int, now_ms: int) -> tuple[GapRecord, list[Event]]:
        """Missing message ``seq`` came late: the gap's new row, and an event when its state
        changed (``gap_filling`` at the first, ``gap_filled`` at the last)."""
        rec = self._active[gap_id]
        got = self._got.setdefault(gap_id, set())
        got.add(seq)
        lo, hi = rec.todo_from_ms, rec.todo_to_ms
        while lo < hi and lo + 1 in got:
            lo += 1
            got.discard(lo)
        while lo < hi and hi in got:
            got.discard(hi)
            hi -= 1
        # After a restart the seqs counted inside the span are not known one by one: the
        # count never passes what was expected.
        recovered = min(rec.expected, rec.recovered + 1)
        state = GapState.FILLED if recovered >= rec.expected else GapState.FILLING
        if state is GapState.FILLED:
            lo = hi
        new = rec.but(
            state=state,
            recovered=recovered,
            todo_from_ms=lo,
            todo_to_ms=hi,
            settled=rec.expected - (hi - lo),
            updated_ms=now_ms,
        )
        events: list[Event] = []
        if state is GapState.FILLED:
            self.drop(gap_id)
            reason = f"every missing message came late ({recovered} of {rec.expected})"
            events.append(gap_event(new.but(reason=reason), reason, now_ms, seq=seq))
            new = new.but(reason=reason)
        else:
            self._put(new)
            if rec.state is GapState.OPEN:
                reason = f"missing messages are coming late: seq {seq} came"
                events.append(gap_event(new, reason, now_ms, seq=seq))
        return new, events

    def undo(self, before: GapRecord, after: GapRecord, seq: int) -> GapRecord | None:
        """Message ``seq``, counted by :meth:`arrived` (the gap was ``before``, became
        ``after``), was not stored after all (a repeat): the gap's row without it, to write
        again, or ``None`` when it is no longer held (closed since)."""
        rec = self._active.get(before.id)
        if rec is None:
            if after.state is not GapState.FILLED:
                return None
            self._put(before)  # it filled the gap: back as it was
            return before
        got = self._got.setdefault(before.id, set())
        lo, hi = rec.todo_from_ms, rec.todo_to_ms
        if seq in got:
            got.discard(seq)
        elif seq == lo:
            lo -= 1
        elif seq == hi + 1:
            hi += 1
        recovered = max(0, rec.recovered - 1)
        new = rec.but(
            state=rec.state if recovered else GapState.OPEN,
            recovered=recovered,
            todo_from_ms=lo,
            todo_to_ms=hi,
            settled=rec.expected - (hi - lo),
            # A repeat does not restart the wait (unless another message came since).
            updated_ms=before.updated_ms if rec.updated_ms == after.updated_ms else rec.updated_ms,
        )
        self._put(new)
        return new

    def close(self, gw: str, why: str, now_ms: int) -> tuple[list[GapRecord], list[Event]]:
        """Close every active gap of ``gw`` now (its counter restarted): rows and events."""
        return self._close([self._active[i] for i in self._of.get(gw, ())], why, now_ms)

    def due(self, now_ms: int) -> tuple[list[GapRecord], list[Event]]:
        """Close the gaps quiet for the wait: ``partly_filled`` or ``unrecoverable``."""
        quiet = [g for g in self._active.values() if now_ms - g.updated_ms >= self.wait_ms]
        return self._close(quiet, f"waited {self.wait_ms / 1000:g} s for them", now_ms)

    def _close(
        self, gaps: list[GapRecord], why: str, now_ms: int
    ) -> tuple[list[GapRecord], list[Event]]:
        records: list[GapRecord] = []
        events: list[Event] = []
        for rec in sorted(gaps, key=lambda g: g.id):
            if rec.recovered:
                state = GapState.PARTLY_FILLED
                lo, hi = rec.todo_from_ms + 1, rec.todo_to_ms
                reason = (
                    f"{rec.recovered} of {rec.expected} missing message(s) came late, "
                    f"{rec.missing} never came (within {_span(lo, hi)}): {why}"
                )
            else:
                state = GapState.UNRECOVERABLE
                reason = f"none of the {rec.expected} missing message(s) came: {why}"
            new = rec.but(state=state, updated_ms=now_ms, reason=reason)
            self.drop(rec.id)
            records.append(new)
            events.append(gap_event(new, reason, now_ms))
        return records, events


async def age_seq_gaps(
    gaps: SeqGaps,
    store: JobStore,
    every: float = AGE_EVERY_S,
    clock: Callable[[], int] = _now_ms,
) -> None:
    """Close the gaps whose wait is over, every ``every`` seconds, until cancelled (the
    daemon's ``seq-gaps`` task). A closing that does not commit is tried again."""
    while True:
        await asyncio.sleep(every)
        await close_due(gaps, store, clock())


async def close_due(gaps: SeqGaps, store: JobStore, now_ms: int) -> int:
    """One pass of :func:`age_seq_gaps`: returns how many gaps closed."""
    held = {g.id: g for g in gaps.active()}
    records, events = gaps.due(now_ms)
    if not records:
        return 0
    job = WriteJob(events=events, gaps=[r.row() for r in records], origin="gaps")
    try:
        await asyncio.shield(store.submit(job))
    except Exception as exc:  # the store failed: the gaps wait for the next pass
        gaps.take(held[r.id] for r in records)
        log.warning("seq_gaps_not_closed", gaps=len(records), error=str(exc))
        return 0
    gaps.committed(records)
    for e in events:
        log.info(str(e.kind), concentrator=e.subject, reason=e.reason)
    return len(records)
