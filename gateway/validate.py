"""Validation (VEE): every reading is checked and flagged, never dropped.

The :class:`Validator` sits in front of the buffer, for polled readings
(``accept``) and for the concentrator ingest's write jobs (``submit``, rows in
column form) alike. For each reading it sets quality flags:

- ``non_monotonic``: a cumulative (energy) register went down;
- ``rollover``: it went down because it wrapped past its top
  (``register_max_kwh``), which is not an error but must be visible;
- ``suspect_spike``: a register rose faster than ``max_power_kw`` allows;
- ``out_of_range``: outside the configured plausible bounds;
- ``clock_drift``: a live concentrator reading stamped further than
  ``max_clock_skew`` from the time it was received. Only live readings are
  checked: a backfilled or interval (load-profile) record is old by nature,
  and gateway-stamped (polled) readings have no other clock. Polled meters'
  clocks are read by the scheduler, which raises a ``clock_drift`` event;
- ``tariff_mismatch``: the tariff registers of one meter at one instant (in
  one job) do not sum to the total, within ``tariff_sum_tolerance`` steps of
  the registers' last digit; the total and every tariff are flagged. With all
  four tariffs present the sum must match; with fewer it must not exceed.

A register that falls to under a tenth of its last value without having been
near its top is a counter reset (meter replaced or cleared): the reading is flagged
``non_monotonic`` and a ``counter_reset`` event is recorded.

Thresholds are ``[validation]``'s, or per meter where its profile or its own
``validation`` table overrides them (``per_meter``, see
:func:`gateway.config.southbound.meter_thresholds`).

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
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation

from gateway.buffer import JobStore, Outcome, ReadingValues, Reference, WriteJob
from gateway.config.validation import ValidationConfig
from gateway.logs import get_logger
from gateway.model import Event, EventKind, Quality, Reading, TimeSource
from protocols.quantities import QUANTITIES

_MS_PER_HOUR = 3_600_000
_CUMULATIVE = frozenset(k for k, q in QUANTITIES.items() if q.cumulative)
_CONCENTRATOR = TimeSource.CONCENTRATOR.value
_TARIFFS = 4
_TARIFF_REGISTERS: dict[str, tuple[str, int]] = {
    f"energy_{d}_{part}_kwh": (d, n)
    for d in ("combined", "import", "export")
    for n, part in enumerate(("total", *(f"t{i}" for i in range(1, _TARIFFS + 1))))
}
"""Energy register key -> (family, 0 for the total or the tariff number)."""
_TARIFF_PARTS = frozenset(k for k, (_, n) in _TARIFF_REGISTERS.items() if n)
_TARIFF_TOTALS = frozenset(k for k, (_, n) in _TARIFF_REGISTERS.items() if not n)
# Flags as plain ints on the per-reading path: enum arithmetic costs more than the checks.
_OK = int(Quality.OK)
_BACKFILLED = int(Quality.BACKFILLED)
_CLOCK_DRIFT = int(Quality.CLOCK_DRIFT)
_OUT_OF_RANGE = int(Quality.OUT_OF_RANGE)
_NON_MONOTONIC = int(Quality.NON_MONOTONIC)
_ROLLOVER = int(Quality.ROLLOVER)
_SUSPECT_SPIKE = int(Quality.SUSPECT_SPIKE)
_TARIFF_MISMATCH = int(Quality.TARIFF_MISMATCH)

Latest = dict[tuple[str, str], tuple[int, Decimal]]
Register = tuple[int, str, str, int, Decimal]
"""A tariff or total register seen in a job: (position, meter, key, ts_ms, value)."""
SAVE_EVERY_S = 30.0

log = get_logger("validate")


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """One set of thresholds, in the forms the checks compare against."""

    ranges: Mapping[str, tuple[Decimal, Decimal]]
    top: Decimal
    near_top: Decimal
    near_zero: Decimal
    max_kwh_per_ms: Decimal
    skew_ms: int
    tariff_steps: int

    @classmethod
    def of(cls, cfg: ValidationConfig) -> Limits:
        """The limits of a ``[validation]`` section (or a meter's merged one)."""
        top = Decimal(str(cfg.register_max_kwh))
        margin = Decimal(str(cfg.rollover_margin))
        return cls(
            ranges={k: (Decimal(str(r.min)), Decimal(str(r.max))) for k, r in cfg.ranges.items()},
            top=top,
            near_top=top * (1 - margin),
            near_zero=top * margin,
            max_kwh_per_ms=Decimal(str(cfg.max_power_kw)) / _MS_PER_HOUR,
            skew_ms=int(cfg.max_clock_skew * 1000),
            tariff_steps=cfg.tariff_sum_tolerance,
        )


def is_live(ts_source: str, quality: int, interval_s: int | None) -> bool:
    """Whether a reading's own time stamp says when it was read just now.

    Only a concentrator's readings qualify: polled readings carry the gateway's
    time; meter-stamped ones are frozen or load-profile records, and backfilled
    or interval readings are records too, old by nature.
    """
    return ts_source == _CONCENTRATOR and interval_s is None and not quality & _BACKFILLED


def _compiled(per_meter: Mapping[str, ValidationConfig]) -> dict[str, Limits]:
    return {meter: Limits.of(cfg) for meter, cfg in per_meter.items()}


class Validator:
    """Flags readings, then hands them on to the buffer (an :class:`Acceptor` and a
    :class:`JobStore`)."""

    def __init__(
        self,
        inner: JobStore,
        config: ValidationConfig | None = None,
        *,
        per_meter: Mapping[str, ValidationConfig] | None = None,
        save_every: float = SAVE_EVERY_S,
    ) -> None:
        self._inner = inner
        self._save_every = save_every
        self._next_save = time.monotonic() + save_every
        self._dirty: set[tuple[str, str]] = set()
        """References changed since they were last handed to the buffer."""
        self._default = Limits.of(config or ValidationConfig())
        self._per_meter = _compiled(per_meter or {})
        self._last: Latest = {}

    @property
    def healthy(self) -> bool:
        """Whether the buffer behind is committing (see :class:`JobStore`)."""
        return self._inner.healthy

    def use_thresholds(self, per_meter: Mapping[str, ValidationConfig]) -> None:
        """Check these meters against their own thresholds from now on (a reload); the
        others against the defaults."""
        self._per_meter = _compiled(per_meter)

    def limits(self, meter: str) -> Limits:
        """The thresholds ``meter`` is checked against."""
        return self._per_meter.get(meter, self._default)

    async def accept(self, readings: Sequence[Reading], events: Sequence[Event] = ()) -> None:
        """Flag, store durably, then return; a cancelled caller does not cancel the commit."""
        await asyncio.shield(self.submit(WriteJob(readings=readings, events=events)))

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        """Flag the job's readings and rows, add any events found, queue it for commit."""
        latest: Latest = {}
        found: list[Event] = []
        readings = self._readings(job.readings, latest, found) if job.readings else job.readings
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
        if self._unsaved(fut, refs):
            return
        job = fut.result()
        if job.outcome is not Outcome.ACCEPTED:
            return
        # The flag counts themselves are the buffer's: it counts what it committed.
        self._last.update(latest)
        self._dirty.update(latest)

    def _unsaved(self, fut: asyncio.Future[WriteJob], refs: list[Reference]) -> bool:
        """Whether the commit failed; its references are then saved with a later job."""
        if fut.cancelled() or fut.exception() is not None:
            self._dirty.update((r[0], r[1]) for r in refs)
            return True
        return False

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
        fut.add_done_callback(lambda f: self._unsaved(f, refs))
        await asyncio.shield(fut)
        return len(refs)

    def _readings(
        self, readings: Sequence[Reading], latest: Latest, found: list[Event]
    ) -> list[Reading]:
        out: list[Reading] = []
        totals: list[Register] = []
        parts: list[Register] = []
        for r in readings:
            lim = self.limits(r.meter)
            flags = self._value_flags(lim, r.meter, r.key, r.value, r.ts_ms, latest, found)
            if (
                is_live(r.ts_source, r.quality, r.interval_s)
                and abs(r.ts_ms - r.received_ms) > lim.skew_ms
            ):
                flags |= _CLOCK_DRIFT
            if r.key in _TARIFF_PARTS:
                parts.append((len(out), r.meter, r.key, r.ts_ms, r.value))
            elif r.key in _TARIFF_TOTALS:
                totals.append((len(out), r.meter, r.key, r.ts_ms, r.value))
            out.append(dataclasses.replace(r, quality=r.quality | Quality(flags)) if flags else r)
        for i in self._tariff_mismatches(totals, parts):
            out[i] = dataclasses.replace(out[i], quality=out[i].quality | Quality.TARIFF_MISMATCH)
        return out

    def _rows(
        self, rows: Sequence[ReadingValues], latest: Latest, found: list[Event]
    ) -> list[ReadingValues]:
        # The concentrator's hot path, a loop rather than a call per row: most rows need
        # only the clock check, and a value (as Decimal) only for cumulative or ranged keys.
        per_meter = self._per_meter
        lim = self._default
        ranges, skew = lim.ranges, lim.skew_ms
        value_flags = self._value_flags
        out: list[ReadingValues] = []
        append = out.append
        totals: list[Register] = []
        parts: list[Register] = []
        for row in rows:
            meter, key, ts_ms = row[0], row[1], row[4]
            if per_meter:
                lim = per_meter.get(meter, self._default)
                ranges, skew = lim.ranges, lim.skew_ms
            if key in _CUMULATIVE or key in ranges:
                try:
                    value = Decimal(row[2])
                except InvalidOperation:  # the ingest stores only numbers; guard the reference
                    append(row)
                    continue
                flags = value_flags(lim, meter, key, value, ts_ms, latest, found)
                if key in _TARIFF_PARTS:
                    parts.append((len(out), meter, key, ts_ms, value))
                elif key in _TARIFF_TOTALS:
                    totals.append((len(out), meter, key, ts_ms, value))
            else:
                flags = _OK
            # is_live, inline: a live concentrator reading has no interval and no backfilled flag.
            if (
                row[5] == _CONCENTRATOR
                and abs(ts_ms - row[6]) > skew
                and row[9] is None
                and not row[8] & _BACKFILLED
            ):
                flags |= _CLOCK_DRIFT
            append((*row[:8], row[8] | flags, row[9]) if flags else row)
        for i in self._tariff_mismatches(totals, parts):
            row = out[i]
            out[i] = (*row[:8], row[8] | _TARIFF_MISMATCH, row[9])
        return out

    def _tariff_mismatches(
        self, totals: Sequence[Register], parts: Sequence[Register]
    ) -> list[int]:
        """Positions of the total and tariff registers whose meter, instant and family
        (import, export, combined) have tariffs that do not sum to the total."""
        if not parts or not totals:  # most jobs: no tariff registers at all
            return []
        groups: dict[tuple[str, int, str], dict[int, tuple[int, Decimal]]] = {}
        for pos, meter, key, ts_ms, value in parts:
            family, n = _TARIFF_REGISTERS[key]
            groups.setdefault((meter, ts_ms, family), {})[n] = (pos, value)  # a repeat: once
        bad: list[int] = []
        for pos, meter, key, ts_ms, total in totals:
            group = groups.get((meter, ts_ms, _TARIFF_REGISTERS[key][0]))
            if group is None:
                continue
            tariffs = group.values()
            excess = sum((v for _, v in tariffs), -total)
            if not excess:  # the common case: they add up exactly
                continue
            # One step of the last digit of the coarsest register: meters round each.
            exponents = [v.as_tuple().exponent for _, v in tariffs]
            exponents.append(total.as_tuple().exponent)
            step = Decimal(1).scaleb(max(e for e in exponents if isinstance(e, int)))
            tolerance = step * self.limits(meter).tariff_steps
            if excess > tolerance or (len(tariffs) == _TARIFFS and -excess > tolerance):
                bad.append(pos)
                bad.extend(p for p, _ in tariffs)
        return bad

    def _value_flags(
        self,
        lim: Limits,
        meter: str,
        key: str,
        value: Decimal,
        ts_ms: int,
        latest: Latest,
        found: list[Event],
    ) -> int:
        bounds = lim.ranges.get(key)
        outside = bounds is not None and not bounds[0] <= value <= bounds[1]
        flags = _OUT_OF_RANGE if outside else _OK
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
            if prev_value >= lim.near_top and value <= lim.near_zero:
                rise = lim.top - prev_value + value
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
        if rise > lim.max_kwh_per_ms * (ts_ms - prev_ts):
            flags |= _SUSPECT_SPIKE
        return flags
