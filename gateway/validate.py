"""Validation (VEE): every reading is checked and flagged, never dropped.

The :class:`Validator` sits in front of the buffer as an :class:`Acceptor`.
For each reading it sets quality flags:

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

import dataclasses
import time
from collections.abc import Sequence
from decimal import Decimal

from gateway.config.validation import ValidationConfig
from gateway.metrics import Metrics
from gateway.model import Acceptor, Event, EventKind, Quality, Reading, TimeSource
from protocols.quantities import QUANTITIES

_MS_PER_HOUR = 3_600_000
_CUMULATIVE = frozenset(k for k, q in QUANTITIES.items() if q.cumulative)


class Validator:
    """An :class:`Acceptor` that flags readings, then hands them on."""

    def __init__(
        self, inner: Acceptor, metrics: Metrics, config: ValidationConfig | None = None
    ) -> None:
        self._inner = inner
        self._metrics = metrics
        cfg = config or ValidationConfig()
        self._cfg = cfg
        self._ranges = {
            k: (Decimal(str(r.min)), Decimal(str(r.max))) for k, r in cfg.ranges.items()
        }
        self._top = Decimal(str(cfg.register_max_kwh))
        self._near_top = self._top * Decimal(str(1 - cfg.rollover_margin))
        self._near_zero = self._top * Decimal(str(cfg.rollover_margin))
        self._max_kwh_per_ms = Decimal(str(cfg.max_power_kw)) / _MS_PER_HOUR
        self._skew_ms = int(cfg.max_clock_skew * 1000)
        self._last: dict[tuple[str, str], tuple[int, Decimal]] = {}

    async def accept(self, readings: Sequence[Reading], events: Sequence[Event] = ()) -> None:
        """Flag each reading, store them with any events found, then remember them."""
        checked: list[Reading] = []
        found: list[Event] = []
        latest: dict[tuple[str, str], tuple[int, Decimal]] = {}
        for r in readings:
            flags = self._check(r, latest, found)
            checked.append(dataclasses.replace(r, quality=r.quality | flags) if flags else r)
        await self._inner.accept(checked, [*events, *found])
        self._last.update(latest)
        for r in checked:
            if r.quality:
                for name in r.quality.names():
                    self._metrics.readings_flagged.labels(name).inc()

    def _check(
        self,
        r: Reading,
        latest: dict[tuple[str, str], tuple[int, Decimal]],
        found: list[Event],
    ) -> Quality:
        flags = Quality.OK
        bounds = self._ranges.get(r.key)
        if bounds is not None and not bounds[0] <= r.value <= bounds[1]:
            flags |= Quality.OUT_OF_RANGE
        if r.ts_source is not TimeSource.POLL and abs(r.ts_ms - r.received_ms) > self._skew_ms:
            flags |= Quality.CLOCK_DRIFT
        if r.key not in _CUMULATIVE:
            return flags
        ident = (r.meter, r.key)
        prev = latest.get(ident) or self._last.get(ident)
        if prev is None:
            latest[ident] = (r.ts_ms, r.value)
            return flags
        if r.ts_ms <= prev[0]:  # backfill of the past, or a repeat: range checks only
            return flags
        prev_ts, prev_value = prev
        latest[ident] = (r.ts_ms, r.value)
        if r.value < prev_value:
            if prev_value >= self._near_top and r.value <= self._near_zero:
                rise = self._top - prev_value + r.value
                flags |= Quality.ROLLOVER
            else:
                flags |= Quality.NON_MONOTONIC
                if r.value * 10 < prev_value:  # fell to under a tenth: a new counter
                    found.append(
                        Event(
                            EventKind.COUNTER_RESET,
                            int(time.time() * 1000),
                            r.meter,
                            reason=f"{r.key} fell from {prev_value} to {r.value}",
                            detail={"key": r.key, "from": str(prev_value), "to": str(r.value)},
                        )
                    )
                return flags
        else:
            rise = r.value - prev_value
        if rise > self._max_kwh_per_ms * (r.ts_ms - prev_ts):
            flags |= Quality.SUSPECT_SPIKE
        return flags
