"""Daily figures of one meter from one local day of its readings (pure: no I/O, no clock).

What a day's figures are made of, in the meter's own time zone:

- **Consumption per tariff period** (sharp, peak, flat, valley) and total: the
  difference of the registers at the day's two midnights. A register value
  stamped within :data:`SNAP_MS` of a midnight stands for it (the daily freeze,
  or a load-profile record, or a poll close to it), so on a meter whose daily
  freezes are stored the figure *is* the difference of its frozen registers,
  exactly, in ``Decimal``. Otherwise (a meter without freezes) the register is
  interpolated between the polls either side of the midnight, when they are at
  most one interval apart, and the day is ``estimated``.
- **Interval data**: the import total at every 15-minute boundary of the day,
  found the same way (load-profile records sit on the boundaries; polls are
  interpolated). An interval is *present* when both its ends are known.
  ``completeness`` is the share of the day's intervals present (a DST day has
  92 or 100 of them).
- **Maximum 15-minute demand** (kW): the largest interval energy times four,
  and ``max_demand_at``, the *end* of that interval (as meters stamp demand
  and load-profile records). **Load factor**: mean demand over the intervals
  present divided by the maximum. **Valley share**: valley energy / total.
- **Quality**: ``ESTIMATED`` when the day had an unfilled gap (completeness < 1),
  or a midnight register had to be interpolated or is missing.

Register readings the validator flagged as a spike, out of range or
non-monotonic are left out; a register that fell during the day (a counter
reset) gives no consumption for it, and a fall between two boundaries no demand.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal

from gateway.model import Quality
from protocols.quantities import TARIFF_NAMES

INTERVAL_S = 900
"""The interval of demand and completeness: 15 minutes."""
SNAP_MS = 60_000
"""A register stamped this close to a boundary stands for it (meter clocks drift)."""
BRIDGE_MS = INTERVAL_S * 1000
"""Polls at most this far apart may be interpolated across a boundary; a longer
silence leaves the intervals inside it missing."""

TOTAL_KEY = "energy_import_total_kwh"
TARIFF_KEYS = tuple(f"energy_import_t{n}_kwh" for n in range(1, 5))
"""Import registers of tariffs 1..4 (sharp, peak, flat, valley)."""
ENERGY_FIGURES = ("total", *TARIFF_NAMES)
"""The keys of :attr:`DailyFigures.energy_kwh`, in display order."""

_RATIO = Decimal("0.0001")
_PER_HOUR = 3600 // INTERVAL_S
_DOUBTFUL = Quality.SUSPECT_SPIKE | Quality.OUT_OF_RANGE | Quality.NON_MONOTONIC
"""Register readings the validator doubted: never a day's boundary or interval."""


@dataclass(frozen=True, slots=True)
class Point:
    """One stored register value: its quantity key, UTC time (ms) and value."""

    key: str
    ts_ms: int
    value: Decimal
    quality: Quality = Quality.OK


@dataclass(frozen=True, slots=True)
class DailyFigures:
    """One meter's figures for one local day. ``None`` where the data cannot say."""

    meter: str
    day: date
    zone: tzinfo
    energy_kwh: Mapping[str, Decimal | None]
    """``total``, ``sharp``, ``peak``, ``flat``, ``valley`` (kWh, exact)."""
    max_demand_kw: Decimal | None
    max_demand_at: datetime | None
    """End of the interval of maximum demand, in the meter's zone."""
    load_factor: Decimal | None
    valley_share: Decimal | None
    completeness: Decimal
    intervals_present: int
    intervals_expected: int
    quality: Quality
    start_ms: int
    """The day's first instant (local midnight), ms UTC."""
    end_ms: int
    """The next day's first instant, ms UTC."""
    notes: tuple[str, ...] = field(default=())
    """Why the day is estimated, in words (for the report)."""

    @property
    def has_data(self) -> bool:
        """False when nothing at all was known of the day."""
        return self.intervals_present > 0 or any(v is not None for v in self.energy_kwh.values())


def day_bounds(day: date, zone: tzinfo) -> tuple[int, int]:
    """The local day's first instant and the next day's, ms UTC (23 or 25 h on DST days)."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


class _Series:
    """One key's values, sorted by time, with the register at any instant."""

    def __init__(self, points: list[Point]) -> None:
        points.sort(key=lambda p: p.ts_ms)
        self.ts = [p.ts_ms for p in points]
        self.values = [p.value for p in points]

    def at(self, ts_ms: int) -> tuple[Decimal | None, bool]:
        """The register at ``ts_ms`` and whether it is exact (a value within the snap)."""
        i = bisect.bisect_left(self.ts, ts_ms)
        best: int | None = None
        for j in (i - 1, i):
            near = 0 <= j < len(self.ts) and abs(self.ts[j] - ts_ms) <= SNAP_MS
            if near and (best is None or abs(self.ts[j] - ts_ms) < abs(self.ts[best] - ts_ms)):
                best = j
        if best is not None:
            return self.values[best], True
        if 0 < i < len(self.ts) and self.ts[i] - self.ts[i - 1] <= BRIDGE_MS:
            t0, t1 = self.ts[i - 1], self.ts[i]
            v0, v1 = self.values[i - 1], self.values[i]
            exponent = min(v0.as_tuple().exponent, v1.as_tuple().exponent)
            value = v0 + (v1 - v0) * Decimal(ts_ms - t0) / Decimal(t1 - t0)
            return value.quantize(Decimal(1).scaleb(int(exponent))), False
        return None, False


def compute_daily(meter: str, day: date, zone: tzinfo, points: Iterable[Point]) -> DailyFigures:
    """The figures of ``meter`` for local ``day`` in ``zone`` from its register ``points``.

    ``points`` may reach beyond the day (they should, by an interval either side,
    for interpolation); keys other than the import registers are ignored.
    """
    start_ms, end_ms = day_bounds(day, zone)
    by_key: dict[str, list[Point]] = {}
    doubtful = 0
    for p in points:
        if p.key == TOTAL_KEY or p.key in TARIFF_KEYS:
            if p.quality & _DOUBTFUL:
                doubtful += 1
                continue
            by_key.setdefault(p.key, []).append(p)
    series = {k: _Series(v) for k, v in by_key.items()}
    notes: list[str] = []
    if doubtful:
        notes.append(f"{doubtful} register reading(s) flagged spike/range/non-monotonic left out")

    energy: dict[str, Decimal | None] = {}
    exact_ends = True
    for name, key in zip(ENERGY_FIGURES, (TOTAL_KEY, *TARIFF_KEYS), strict=True):
        s = series.get(key)
        if s is None:
            energy[name] = None
            continue
        first, exact_first = s.at(start_ms)
        last, exact_last = s.at(end_ms)
        exact_ends = exact_ends and exact_first and exact_last
        if first is not None and last is not None and last < first:
            notes.append(f"{key} fell during the day (counter reset or meter replaced)")
            first = None
        energy[name] = None if first is None or last is None else last - first
    tariffs = [energy[n] for n in TARIFF_NAMES]
    if energy["total"] is None and all(v is not None for v in tariffs):
        energy["total"] = sum((v for v in tariffs if v is not None), Decimal(0))
    if any(v is None for v in energy.values()):
        notes.append("a register at a midnight is missing")
    elif not exact_ends:
        notes.append("registers at a midnight interpolated between polls")

    expected = (end_ms - start_ms) // (INTERVAL_S * 1000)
    total = series.get(TOTAL_KEY)
    boundaries: list[Decimal | None] = []
    for i in range(expected + 1):
        value = total.at(start_ms + i * INTERVAL_S * 1000)[0] if total is not None else None
        boundaries.append(value)
    intervals: list[tuple[int, Decimal]] = []
    for i in range(expected):
        a, b = boundaries[i], boundaries[i + 1]
        if a is not None and b is not None and b >= a:  # a fall is a reset: not a demand
            intervals.append((i, b - a))
    present = len(intervals)
    completeness = (
        (Decimal(present) / Decimal(expected)).quantize(_RATIO) if expected else Decimal(0)
    )
    if present < expected:
        notes.append(f"{expected - present} of {expected} intervals missing")

    max_kw: Decimal | None = None
    max_at: datetime | None = None
    load_factor: Decimal | None = None
    if intervals:
        index, peak = max(intervals, key=lambda item: item[1])  # first of equals
        max_kw = peak * _PER_HOUR  # an integer factor: the register's resolution stays
        end_of = start_ms + (index + 1) * INTERVAL_S * 1000
        max_at = datetime.fromtimestamp(end_of / 1000, zone)
        if peak > 0:
            load_factor = (sum((e for _, e in intervals), Decimal(0)) / present / peak).quantize(
                _RATIO
            )

    valley_share: Decimal | None = None
    if energy["valley"] is not None and energy["total"]:
        valley_share = (energy["valley"] / energy["total"]).quantize(_RATIO)

    estimated = present < expected or not exact_ends or any(v is None for v in energy.values())
    return DailyFigures(
        meter=meter,
        day=day,
        zone=zone,
        energy_kwh=energy,
        max_demand_kw=max_kw,
        max_demand_at=max_at,
        load_factor=load_factor,
        valley_share=valley_share,
        completeness=completeness,
        intervals_present=present,
        intervals_expected=expected,
        quality=Quality.ESTIMATED if estimated else Quality.OK,
        start_ms=start_ms,
        end_ms=end_ms,
        notes=tuple(notes),
    )
