"""Validation (VEE): every reading is checked and flagged, never dropped.

:func:`check` is a pure function of a batch of readings (the write path's one
shape, :data:`~gateway.model.ReadingValues`), the reference state and the
thresholds: it returns the rows with their quality flags and the events found.
The :class:`Validator` holds that state (thresholds, the last value per meter
and register) and moves it only when the write path tells it a job committed
(:class:`gateway.writepath.WritePath`). For each reading it sets quality flags:

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

The last value per (meter, quantity) is remembered only after the job has
committed, so a failed commit leaves the reference unchanged.
Readings older than the reference (backfill) are range-checked only.

References survive restarts: those that changed are written to the buffer
(``WriteJob.refs``) with the next job after ``save_every`` seconds, and by
:meth:`gateway.writepath.WritePath.save` at shutdown; :meth:`Validator.restore` loads them at
start. After a crash the references are at most ``save_every`` old, which
still catches a register that went down.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation

from gateway.buffer import Outcome, Reference, WriteJob
from gateway.config.validation import ValidationConfig
from gateway.logs import get_logger
from gateway.model import Event, EventKind, Quality, ReadingValues, TimeSource
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


def _compiled(per_meter: Mapping[str, ValidationConfig]) -> dict[str, Limits]:
    return {meter: Limits.of(cfg) for meter, cfg in per_meter.items()}


@dataclasses.dataclass(slots=True)
class Checked:
    """What :func:`check` found in a batch."""

    rows: list[ReadingValues]
    """The batch, each row with its quality flags."""
    events: list[Event]
    """Events the batch revealed (counter resets)."""
    latest: Latest
    """The references the batch moves, to take up once it is stored."""


def check(
    rows: Sequence[ReadingValues],
    last: Mapping[tuple[str, str], tuple[int, Decimal]],
    default: Limits,
    per_meter: Mapping[str, Limits] | None = None,
    now_ms: int | None = None,
) -> Checked:
    """Flag a batch: a pure function of the rows, the reference state ``last`` and the
    thresholds (``per_meter`` over ``default``). ``now_ms`` stamps the events found."""
    # The hot path of concentrator ingest, a loop rather than a call per row: most rows
    # need only the clock check, and a value (as Decimal) only for cumulative or ranged keys.
    latest: Latest = {}
    found: list[Event] = []
    lim = default
    ranges, skew = lim.ranges, lim.skew_ms
    out: list[ReadingValues] = []
    append = out.append
    totals: list[Register] = []
    parts: list[Register] = []
    for row in rows:
        meter, key, ts_ms = row[0], row[1], row[4]
        if per_meter:
            lim = per_meter.get(meter, default)
            ranges, skew = lim.ranges, lim.skew_ms
        if key in _CUMULATIVE or key in ranges:
            try:
                value = Decimal(row[2])
            except InvalidOperation:  # the sources store only numbers; guard the reference
                append(row)
                continue
            flags = _value_flags(lim, meter, key, value, ts_ms, last, latest, found, now_ms)
            if key in _TARIFF_PARTS:
                parts.append((len(out), meter, key, ts_ms, value))
            elif key in _TARIFF_TOTALS:
                totals.append((len(out), meter, key, ts_ms, value))
        else:
            flags = _OK
        # Only a live reading's stamp says when it was read just now: a concentrator's, with
        # no interval and no backfilled flag. Polled readings carry the gateway's time;
        # meter-stamped, interval and backfilled readings are records, old by nature.
        if (
            row[5] == _CONCENTRATOR
            and abs(ts_ms - row[6]) > skew
            and row[9] is None
            and not row[8] & _BACKFILLED
        ):
            flags |= _CLOCK_DRIFT
        append((*row[:8], row[8] | flags, row[9]) if flags else row)
    if parts and totals:  # most batches: no tariff registers at all
        for i in _tariff_mismatches(totals, parts, default, per_meter):
            row = out[i]
            out[i] = (*row[:8], row[8] | _TARIFF_MISMATCH, row[9])
    return Checked(out, found, latest)


def _tariff_mismatches(
    totals: Sequence[Register],
    parts: Sequence[Register],
    default: Limits,
    per_meter: Mapping[str, Limits] | None,
) -> list[int]:
    """Positions of the total and tariff registers whose meter, instant and family
    (import, export, combined) have tariffs that do not sum to the total."""
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
        lim = per_meter.get(meter, default) if per_meter else default
        tolerance = step * lim.tariff_steps
        if excess > tolerance or (len(tariffs) == _TARIFFS and -excess > tolerance):
            bad.append(pos)
            bad.extend(p for p, _ in tariffs)
    return bad


def _value_flags(
    lim: Limits,
    meter: str,
    key: str,
    value: Decimal,
    ts_ms: int,
    last: Mapping[tuple[str, str], tuple[int, Decimal]],
    latest: Latest,
    found: list[Event],
    now_ms: int | None,
) -> int:
    bounds = lim.ranges.get(key)
    outside = bounds is not None and not bounds[0] <= value <= bounds[1]
    flags = _OUT_OF_RANGE if outside else _OK
    if key not in _CUMULATIVE:
        return flags
    ident = (meter, key)
    prev = latest.get(ident) or last.get(ident)
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
                        int(time.time() * 1000) if now_ms is None else now_ms,
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


class Validator:
    """The validation state: thresholds and references, moved only by what committed."""

    def __init__(
        self,
        config: ValidationConfig | None = None,
        *,
        per_meter: Mapping[str, ValidationConfig] | None = None,
        save_every: float = SAVE_EVERY_S,
    ) -> None:
        self._save_every = save_every
        self._next_save = time.monotonic() + save_every
        self._dirty: set[tuple[str, str]] = set()
        """References changed since they were last handed to the buffer."""
        self._default = Limits.of(config or ValidationConfig())
        self._per_meter = _compiled(per_meter or {})
        self._last: Latest = {}

    def use_thresholds(self, per_meter: Mapping[str, ValidationConfig]) -> None:
        """Check these meters against their own thresholds from now on (a reload); the
        others against the defaults."""
        self._per_meter = _compiled(per_meter)

    def limits(self, meter: str) -> Limits:
        """The thresholds ``meter`` is checked against."""
        return self._per_meter.get(meter, self._default)

    def check(self, job: WriteJob) -> tuple[WriteJob, Latest, list[Reference]]:
        """The job with its rows flagged, the events found added and, when due, the
        changed references to save with it; the references it moves once committed; and
        every reference it carries (to save again if its commit fails)."""
        refs = list(job.refs)
        if self._dirty and time.monotonic() >= self._next_save:
            refs.extend(self.take_refs())
        if not job.rows:
            return (dataclasses.replace(job, refs=refs) if refs else job), {}, refs
        found = check(job.rows, self._last, self._default, self._per_meter)
        events = [*job.events, *found.events] if found.events else job.events
        checked = dataclasses.replace(job, rows=found.rows, events=events, refs=refs)
        return checked, found.latest, refs

    def committed(self, job: WriteJob, latest: Latest) -> None:
        """``job`` committed: its references move (the flag counts are the buffer's)."""
        if latest and job.outcome is Outcome.ACCEPTED:
            self._last.update(latest)
            self._dirty.update(latest)

    def unsaved(self, refs: Sequence[Reference]) -> None:
        """The commit that carried ``refs`` failed: they are saved with a later job."""
        self._dirty.update((r[0], r[1]) for r in refs)

    def take_refs(self) -> list[Reference]:
        """The references changed since the last call, to store."""
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
