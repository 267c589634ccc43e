"""Validation (VEE): every reading is checked and flagged, never dropped.

The :class:`Validator` sits in front of the buffer, for polled readings
(``accept``) and for the concentrator ingest's write jobs (``submit``, rows in
column form) alike. For each reading it sets quality flags:

- ``non_monotonic``: a cumulative (energy) register went down;
- ``rollover``: it went down because it wrapped past its top
  (``register_max_kwh``), which is not an error but must be visible;
- ``suspect_spike``: a register rose faster than ``max_power_kw`` allows;
- ``out_of_range``: outside the configured plausible bounds;
- ``clock_drift``: a meter- or concentrator-stamped time far from ours.

A register that falls to under a tenth of its last value without having been
near its top is a counter reset (meter replaced or cleared): the reading is flagged
``non_monotonic`` and a ``counter_reset`` event is recorded.

The last value per (meter, quantity) is remembered only after the inner
acceptor has committed, so a failed commit leaves the reference unchanged.
Readings older than the reference (backfill) are range-checked only.

References survive restarts: those that changed are written to the buffer
(``WriteJob.refs``) with the next job after ``save_every`` seconds, and by
:meth:`Validator.save` at shutdown; :meth:`Validator.restore` loads them at
start. After a crash the references are at most ``save_every`` old, which
still catches a register that went down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from gateway.buffer import JobStore, Outcome, ReadingValues, Reference, WriteJob
from gateway.config.validation import ValidationConfig
from gateway.logs import get_logger
from gateway.model import Event, EventKind, Quality, Reading, TimeSource
from protocols.quantities import QUANTITIES

_MS_PER_HOUR = 3_600_000
_CUMULATIVE = frozenset(k for k, q in QUANTITIES.items() if q.cumulative)
_POLL = TimeSource.POLL.value
# Flags as plain ints on the per-reading path: enum arithmetic costs more than the checks.
_OK = int(Quality.OK)
_CLOCK_DRIFT = int(Quality.CLOCK_DRIFT)
_OUT_OF_RANGE = int(Quality.OUT_OF_RANGE)
_NON_MONOTONIC = int(Quality.NON_MONOTONIC)
_ROLLOVER = int(Quality.ROLLOVER)
_SUSPECT_SPIKE = int(Quality.SUSPECT_SPIKE)

Latest = dict[tuple[str, str], tuple[int, Decimal]]
SAVE_EVERY_S = 30.0

log = get_logger("validate")


class Validator:
    """Flags readings, then hands them on to the buffer (an :class:`Acceptor` and a
    :class:`JobStore`)."""

    def __init__(
        self,
        inner: JobStore,
        config: ValidationConfig | None = None,
        *,
        save_every: float = SAVE_EVERY_S,
    ) -> None:
        self._inner = inner
        self._save_every = save_every
        self._next_save = time.monotonic() + save_every
        self._dirty: set[tuple[str, str]] = set()
        """References changed since they were last handed to the buffer."""
        cfg = config or ValidationConfig()
        self._ranges = {
            k: (Decimal(str(r.min)), Decimal(str(r.max))) for k, r in cfg.ranges.items()
        }
        self._top = Decimal(str(cfg.register_max_kwh))
        self._near_top = self._top * Decimal(str(1 - cfg.rollover_margin))
        self._near_zero = self._top * Decimal(str(cfg.rollover_margin))
        self._max_kwh_per_ms = Decimal(str(cfg.max_power_kw)) / _MS_PER_HOUR
        self._skew_ms = int(cfg.max_clock_skew * 1000)
        self._last: Latest = {}

    @property
    def healthy(self) -> bool:
        """Whether the buffer behind is committing (see :class:`JobStore`)."""
        return self._inner.healthy

    async def accept(self, readings: Sequence[Reading], events: Sequence[Event] = ()) -> None:
        """Flag, store durably, then return; a cancelled caller does not cancel the commit."""
        await asyncio.shield(self.submit(WriteJob(readings=readings, events=events)))

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        """Flag the job's readings and rows, add any events found, queue it for commit."""
        latest: Latest = {}
        found: list[Event] = []
        readings = [self._reading(r, latest, found) for r in job.readings]
        rows = self._rows(job.rows, latest, found) if job.rows else job.rows
        refs: list[Reference] = []
        if self._dirty and time.monotonic() >= self._next_save:
            refs = self._take_refs()
        checked = dataclasses.replace(
            job, readings=readings, rows=rows, events=[*job.events, *found], refs=refs
        )
        fut = self._inner.submit(checked)
        fut.add_done_callback(lambda f: self._committed(f, latest, refs))
        return fut

    def _committed(
        self, fut: asyncio.Future[WriteJob], latest: Latest, refs: list[Reference]
    ) -> None:
        # The reference moves only with what was stored: a failed commit changes nothing.
        if fut.cancelled() or fut.exception() is not None:
            self._dirty.update((r[0], r[1]) for r in refs)  # not saved: next time
            return
        job = fut.result()
        if job.outcome is not Outcome.ACCEPTED:
            return
        # The flag counts themselves are the buffer's: it counts what it committed.
        self._last.update(latest)
        self._dirty.update(latest)

    def _take_refs(self) -> list[Reference]:
        self._next_save = time.monotonic() + self._save_every
        last = self._last
        refs = [(m, k, last[m, k][0], str(last[m, k][1])) for m, k in self._dirty]
        self._dirty = set()
        return refs

    def restore(self, refs: Sequence[Reference]) -> int:
        """Take up references an earlier run kept (see :meth:`Buffer.references`);
        return how many. A reference this run already has is not replaced."""
        n = 0
        for meter, key, ts_ms, text in refs:
            if key not in _CUMULATIVE or (meter, key) in self._last:
                continue
            try:
                self._last[meter, key] = (int(ts_ms), Decimal(text))
            except (InvalidOperation, ValueError, TypeError):
                log.warning("reference_unreadable", meter=meter, key=key, value=text)
                continue
            n += 1
        return n

    async def save(self) -> int:
        """Hand every changed reference to the buffer now (at shutdown); return how many."""
        refs = self._take_refs()
        if not refs:
            return 0
        fut = self._inner.submit(WriteJob(refs=refs))
        fut.add_done_callback(lambda f: self._committed(f, {}, refs))
        await asyncio.shield(fut)
        return len(refs)

    def _reading(self, r: Reading, latest: Latest, found: list[Event]) -> Reading:
        flags = self._flags(
            r.meter, r.key, r.value, r.ts_ms, r.ts_source is TimeSource.POLL, r.received_ms,
            latest, found,
        )  # fmt: skip
        return dataclasses.replace(r, quality=r.quality | Quality(flags)) if flags else r

    def _rows(
        self, rows: Sequence[ReadingValues], latest: Latest, found: list[Event]
    ) -> list[ReadingValues]:
        # The concentrator's hot path, a loop rather than a call per row: most rows need
        # only the clock check, and a value (as Decimal) only for cumulative or ranged keys.
        skew = self._skew_ms
        ranges = self._ranges
        value_flags = self._value_flags
        out: list[ReadingValues] = []
        append = out.append
        for row in rows:
            key, ts_ms = row[1], row[4]
            if key in _CUMULATIVE or key in ranges:
                try:
                    value = Decimal(row[2])
                except InvalidOperation:  # the ingest stores only numbers; guard the reference
                    append(row)
                    continue
                flags = value_flags(row[0], key, value, ts_ms, latest, found)
            else:
                flags = _OK
            if row[5] != _POLL and abs(ts_ms - row[6]) > skew:
                flags |= _CLOCK_DRIFT
            append((*row[:8], row[8] | flags, row[9]) if flags else row)
        return out

    def _flags(
        self,
        meter: str,
        key: str,
        value: Decimal | None,
        ts_ms: int,
        polled: bool,
        received_ms: int,
        latest: Latest,
        found: list[Event],
    ) -> int:
        flags = _OK
        if not polled and abs(ts_ms - received_ms) > self._skew_ms:
            flags |= _CLOCK_DRIFT
        if value is None:
            return flags
        return flags | self._value_flags(meter, key, value, ts_ms, latest, found)

    def _value_flags(
        self,
        meter: str,
        key: str,
        value: Decimal,
        ts_ms: int,
        latest: Latest,
        found: list[Event],
    ) -> int:
        flags = _OK
        bounds = self._ranges.get(key)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            flags |= _OUT_OF_RANGE
        if key not in _CUMULATIVE:
            return flags
        ident = (meter, key)
        prev = latest.get(ident) or self._last.get(ident)
        if prev is None:
            latest[ident] = (ts_ms, value)
            return flags
        if ts_ms <= prev[0]:  # backfill of the past, or a repeat: range checks only
            return flags
        prev_ts, prev_value = prev
        latest[ident] = (ts_ms, value)
        if value < prev_value:
            if prev_value >= self._near_top and value <= self._near_zero:
                rise = self._top - prev_value + value
                flags |= _ROLLOVER
            else:
                flags |= _NON_MONOTONIC
                if value * 10 < prev_value:  # fell to under a tenth: a new counter
                    found.append(
                        Event(
                            EventKind.COUNTER_RESET,
                            int(time.time() * 1000),
                            meter,
                            reason=f"{key} fell from {prev_value} to {value}",
                            detail={"key": key, "from": str(prev_value), "to": str(value)},
                        )
                    )
                return flags
        else:
            rise = value - prev_value
        if rise > self._max_kwh_per_ms * (ts_ms - prev_ts):
            flags |= _SUSPECT_SPIKE
        return flags
