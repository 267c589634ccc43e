"""Gap backfill: a gap of the ledger filled from the meter's records, a slice at a time.

Every gap is a row of the gap ledger (:mod:`gateway.gaps`). A backfill reads the
meter's records a slice at a time; each slice's readings are stored in one write
job with the gap's updated row (counts, state, and the part still to read), so a
backfill stopped by a restart resumes from its row, and a gap's counts never
disagree with what is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from drivers.errors import DriverError
from gateway.buffer import JobStore, Outcome, WriteJob
from gateway.gaps import (
    GapLedger,
    GapRecord,
    GapState,
    boundary,
    expected_intervals,
    gap_event,
)
from gateway.health import Gap, record_time_ms
from gateway.logs import get_logger
from gateway.model import Event, Quality, Reading, TimeSource, rows_of
from gateway.scheduler.meters import MeterRun
from gateway.southbound.reader import MeterReader, RecordSlice
from protocols.quantities import is_cumulative

log = get_logger("scheduler")


def _now_ms() -> int:
    return int(time.time() * 1000)


class Backfill:
    """One gap of one meter being filled from its records, a slice at a time.

    The bus task runs :meth:`step` between scheduled polls (see
    ``BusWorker._step``), so a meter back from a long outage (hundreds of
    frozen records, two reads each) does not hold its line: the other meters
    keep their intervals. Each step returns a write job: the slice's readings,
    the gap's ledger row, and an event when the gap's state changed. The job is
    :attr:`done` once the records end (the gap is then ``filled``,
    ``partly_filled`` or ``unrecoverable``) or the meter stops answering (the
    gap stays ``filling``; :attr:`paused`, resumed when the meter answers).
    """

    def __init__(
        self,
        reader: MeterReader,
        meter: MeterRun,
        source: str,
        record: GapRecord,
        ledger: GapLedger | None = None,
        across: str = "",
    ) -> None:
        self.reader = reader
        self.across = across
        """What the registers read before and after the gap say (the energy across it)."""
        self.meter = meter
        self.source = source
        self.record = record
        self.ledger = ledger
        self.done = False
        self.paused = False
        self._keeps_records = reader.record_interval_s(meter.cfg) is not None
        self._slices: AsyncGenerator[RecordSlice, None] | None = None
        self._stamps: set[int] = set()
        """Meter-frame stamps of energy records found by this run."""
        self._seen: set[tuple[str, int]] = set()
        self._readings = 0
        self._profile = False
        self._base = record.settled
        """Intervals recovered by earlier runs, outside the part still to read."""
        self.stored = record
        """The gap's newest row known to be committed: where a rewind goes back to."""
        self._opening: WriteJob | None = None
        self._carry: list[Event] = []
        """The ``gap_opened`` event of an opening that did not commit: sent with the next job
        (every later state change is made again after a rewind; the opening is not)."""
        if ledger is not None:
            ledger.claimed.add(record.id)

    # -- opening -------------------------------------------------------------------

    def opening(self, reason: str = "", polls: int | None = None) -> WriteJob:
        """The job that files the gap: its ``gap_opened`` event and its first ledger row."""
        rec = self.record
        reason = reason or (
            f"no readings for {(rec.end_ms - rec.start_ms) / 1000:.0f} s "
            f"({rec.cause.value}): {rec.expected} interval(s) of {rec.interval_s} s missing"
        )
        extra: dict[str, str | int | bool] = {"bus": self.source}
        if polls is not None:
            extra["polls"] = polls
        self._opening = WriteJob(
            events=[gap_event(rec, reason, rec.updated_ms, **extra)],
            gaps=[rec.row()],
            origin="backfill",
            subject=rec.meter,
        )
        return self._opening

    def submit(self, store: JobStore, job: WriteJob) -> asyncio.Future[WriteJob]:
        """Hand ``job`` to the write path; the ledger view follows once it commits."""
        fut = store.submit(job)
        if not job.gaps:
            return fut
        record = GapRecord.from_row(job.gaps[-1])

        def committed(f: asyncio.Future[WriteJob]) -> None:
            ok = not f.cancelled() and f.exception() is None
            if ok and f.result().outcome is not Outcome.REJECTED:
                self.stored = record
                if self.ledger is not None:
                    self.ledger.note([record])
            elif self._opening is not None and any(e in self._opening.events for e in job.events):
                self._carry = [e for e in self._opening.events if e not in self._carry]

        fut.add_done_callback(committed)
        return fut

    @property
    def started(self) -> bool:
        """Whether reading has begun (or anything of the gap was stored since it opened)."""
        return self._slices is not None or self.stored.state is not GapState.OPEN

    def extend(self, end_ms: int) -> WriteJob:
        """The outage goes on: the gap (not started yet) now ends at ``end_ms``; the job
        that stores its longer row. One outage stays one gap."""
        rec = self.record
        m_end = end_ms + (rec.meter_end_ms - rec.end_ms)
        longer = {
            "end_ms": end_ms,
            "meter_end_ms": m_end,
            "todo_to_ms": m_end,
            "expected": expected_intervals(rec.meter_start_ms, m_end, rec.interval_s),
            "updated_ms": _now_ms(),
        }
        self.record = rec.but(**longer)
        self.stored = self.stored.but(**longer)
        return self._job([], [])

    async def rewind(self) -> None:
        """A slice was not stored: go back to the last committed row, so that what was
        read since is read again (and never counted without being stored)."""
        await self.close(log_it=False)
        self.record = self.stored
        self._stamps.clear()
        self._seen.clear()
        self._base = self.stored.settled
        self._profile = False
        self.done = self.paused = False

    # -- reading -------------------------------------------------------------------

    async def step(self) -> WriteJob:
        """Read the next slice; the job that stores it (see the class docstring)."""
        now = _now_ms()
        if not self._keeps_records:
            return self._finish(now, [])
        events: list[Event] = []
        if self.record.state is GapState.OPEN:
            self.record = self.record.but(state=GapState.FILLING, updated_ms=now)
            events.append(gap_event(self.record, "reading the meter's records", now))
        if self._slices is None:
            window = Gap(self.meter.meter_id, self.record.todo_from_ms, self.record.todo_to_ms)
            self._slices = self.reader.records(self.meter.cfg, window, self.meter.tz)
        try:
            part = await anext(self._slices)
        except StopAsyncIteration:
            return self._finish(now, events)
        except DriverError as exc:
            return await self._pause(now, events, str(exc) or type(exc).__name__)
        readings = self._readings_of(part, now)
        self._advance(part)
        return self._job(readings, events)

    def _readings_of(self, part: RecordSlice, received: int) -> list[Reading]:
        rec = self.record
        out = []
        for s in part.samples:
            ts_ms = s.ts_ms if s.ts_ms is not None else received
            # Frozen records are numbered from the newest: one frozen while the gap is
            # being read shifts the numbers, and the next slice reads a record again.
            if (s.key, ts_ms) in self._seen:
                continue
            self._seen.add((s.key, ts_ms))
            if is_cumulative(s.key) and rec.meter_start_ms < ts_ms <= rec.meter_end_ms:
                self._stamps.add(ts_ms)
            out.append(
                Reading(
                    self.meter.meter_id,
                    s.key,
                    s.value,
                    s.unit,
                    # Stored on our clock: the meter's time less the drift measured nearest.
                    record_time_ms(ts_ms, self.meter.drifts) if s.ts_ms is not None else ts_ms,
                    TimeSource.METER,
                    received,
                    self.source,
                    Quality.BACKFILLED,
                )
            )
        self._readings += len(out)
        return out

    def _advance(self, part: RecordSlice) -> None:
        """Narrow the part still to read, and recount what was recovered."""
        rec = self.record
        lo, hi = rec.todo_from_ms, rec.todo_to_ms
        stamps = [s.ts_ms for s in part.samples if s.ts_ms is not None]
        if part.kind == "profile" and stamps:
            self._profile = True
            lo = max(lo, min(max(stamps), hi))
        elif part.kind == "hourly" and stamps:
            if not self._profile and rec.interval_s != self._fallback_interval():
                # No load profile: the gap is counted in the meter's own poll interval.
                interval = self._fallback_interval()
                rec = rec.but(
                    interval_s=interval,
                    expected=expected_intervals(rec.meter_start_ms, rec.meter_end_ms, interval),
                )
            hi = max(lo, min(hi, min(stamps) - 1))
        found = self._found(rec.interval_s)
        settled = sum(1 for b in found if not lo < b * rec.interval_s * 1000 <= hi)
        self.record = rec.but(
            todo_from_ms=lo,
            todo_to_ms=hi,
            recovered=min(rec.expected, self._base + len(found)),
            settled=self._base + settled,
            updated_ms=_now_ms(),
        )

    def _found(self, interval_s: int) -> set[int]:
        rec = self.record
        step = interval_s * 1000
        return {
            b
            for b in (boundary(ts, interval_s) for ts in self._stamps)
            if rec.meter_start_ms < b * step <= rec.meter_end_ms
        }

    def _fallback_interval(self) -> int:
        interval = self.meter.cumulative_interval()
        return max(1, round(interval)) if interval is not None else self.record.interval_s

    def _job(self, readings: list[Reading], events: list[Event]) -> WriteJob:
        carried, self._carry = self._carry, []
        return WriteJob(
            rows=rows_of(readings),
            events=[*carried, *events],
            gaps=[self.record.row()],
            origin="backfill",
            subject=self.meter.meter_id,
        )

    async def _pause(self, now: int, events: list[Event], error: str) -> WriteJob:
        """The meter stopped answering: keep the progress, resume when it answers."""
        await self.close(log_it=False)
        self.done = self.paused = True
        self.record = self.record.but(reason=f"paused: the meter stopped answering: {error}")
        log.info(
            "meter_backfill_paused",
            meter=self.meter.meter_id,
            bus=self.source,
            gap=self.record.id,
            recovered=self.record.recovered,
            error=error,
        )
        return self._job([], events)

    def _finish(self, now: int, events: list[Event]) -> WriteJob:
        self.done = True
        rec = self.record
        found = len(self._found(rec.interval_s))
        recovered = min(rec.expected, self._base + found)
        rec = rec.but(
            recovered=recovered,
            settled=recovered,
            todo_from_ms=rec.meter_end_ms,
            todo_to_ms=rec.meter_end_ms,
            updated_ms=now,
        )
        records = len(self._stamps)
        if not self._keeps_records:
            state = GapState.UNRECOVERABLE
            reason = (
                f"this meter keeps no interval records: {rec.expected} intervals cannot be "
                "recovered; its registers read before and after the gap still give the "
                f"energy consumed across it{': ' + self.across if self.across else ''}"
            )
        elif rec.expected == 0:
            state = GapState.FILLED
            reason = f"no {rec.interval_s} s interval ended inside the gap: nothing is missing"
        elif rec.missing == 0:
            state = GapState.FILLED
            reason = f"all {rec.expected} interval(s) recovered from the meter's records"
        elif recovered == 0:
            state = GapState.UNRECOVERABLE
            reason = (
                f"the meter's records hold none of the {rec.expected} missing interval(s) "
                "(older than it keeps, or not kept)"
                f"{'; ' + self.across if self.across else ''}"
            )
        else:
            state = GapState.PARTLY_FILLED
            source = "load profile" if self._profile else "frozen records"
            reason = (
                f"{recovered} of {rec.expected} interval(s) recovered from the meter's "
                f"{source}; {rec.missing} cannot be recovered"
                f"{'; ' + self.across if self.across else ''}"
            )
        self.record = rec = rec.but(state=state, reason=reason)
        events.append(
            gap_event(
                rec,
                reason,
                now,
                records=records,
                readings=self._readings,
                complete=state is GapState.FILLED,
            )
        )
        log.info(
            "meter_gap_closed",
            meter=self.meter.meter_id,
            bus=self.source,
            gap=rec.id,
            state=state.value,
            expected=rec.expected,
            recovered=recovered,
        )
        return self._job([], events)

    async def close(self, log_it: bool = True) -> None:
        """Stop reading (the bus is stopping); what was read is stored with its progress."""
        if self._slices is not None:
            await self._slices.aclose()
            self._slices = None
        if log_it:
            log.info(
                "meter_backfill_stopped",
                meter=self.meter.meter_id,
                bus=self.source,
                gap=self.record.id,
                recovered=self.record.recovered,
            )

    def resumed(self) -> Backfill:
        """A fresh job for the same gap, from where this one stopped."""
        return Backfill(
            self.reader, self.meter, self.source, self.stored.but(reason=""), self.ledger
        )
