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
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from gateway.buffer import JobStore, Outcome, ReadingValues, WriteJob
from gateway.config.validation import ValidationConfig
from gateway.metrics import Metrics
from gateway.model import Event, EventKind, Quality, Reading, TimeSource
from protocols.quantities import QUANTITIES

_MS_PER_HOUR = 3_600_000
_CUMULATIVE = frozenset(k for k, q in QUANTITIES.items() if q.cumulative)
_POLL = TimeSource.POLL.value

Latest = dict[tuple[str, str], tuple[int, Decimal]]


class Validator:
    """Flags readings, then hands them on to the buffer (an :class:`Acceptor` and a
    :class:`JobStore`)."""

    def __init__(
        self, inner: JobStore, metrics: Metrics, config: ValidationConfig | None = None
    ) -> None:
        self._inner = inner
        self._metrics = metrics
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
        rows = [self._row(row, latest, found) for row in job.rows]
        checked = dataclasses.replace(
            job, readings=readings, rows=rows, events=[*job.events, *found]
        )
        fut = self._inner.submit(checked)
        fut.add_done_callback(lambda f: self._committed(f, latest))
        return fut

    def _committed(self, fut: asyncio.Future[WriteJob], latest: Latest) -> None:
        # The reference moves only with what was stored: a failed commit changes nothing.
        if fut.cancelled() or fut.exception() is not None:
            return
        job = fut.result()
        if job.outcome is not Outcome.ACCEPTED:
            return
        self._last.update(latest)
        flagged = [int(r.quality) for r in job.readings if r.quality]
        flagged += [row[8] for row in job.rows if row[8]]
        for bits in flagged:
            for name in Quality(bits).names():
                self._metrics.readings_flagged.labels(name).inc()

    def _reading(self, r: Reading, latest: Latest, found: list[Event]) -> Reading:
        flags = self._flags(
            r.meter, r.key, r.value, r.ts_ms, r.ts_source is TimeSource.POLL, r.received_ms,
            latest, found,
        )  # fmt: skip
        return dataclasses.replace(r, quality=r.quality | flags) if flags else r

    def _row(self, row: ReadingValues, latest: Latest, found: list[Event]) -> ReadingValues:
        meter, key, text, _unit, ts_ms, ts_source, received_ms, _src, quality, _iv = row
        checked_value = key in _CUMULATIVE or key in self._ranges
        try:
            value = Decimal(text) if checked_value else None
        except InvalidOperation:  # the ingest only stores numbers; guard the reference anyway
            return row
        flags = self._flags(
            meter, key, value, ts_ms, ts_source == _POLL, received_ms, latest, found
        )
        if not flags:
            return row
        return (*row[:8], quality | flags, row[9])

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
    ) -> Quality:
        flags = Quality.OK
        if not polled and abs(ts_ms - received_ms) > self._skew_ms:
            flags |= Quality.CLOCK_DRIFT
        if value is None:
            return flags
        bounds = self._ranges.get(key)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            flags |= Quality.OUT_OF_RANGE
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
                flags |= Quality.ROLLOVER
            else:
                flags |= Quality.NON_MONOTONIC
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
            flags |= Quality.SUSPECT_SPIKE
        return flags
