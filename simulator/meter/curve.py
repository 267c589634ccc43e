"""The daily load curve and the time-of-use tariff schedule.

A load curve is a smooth function of local time of day: a base load (the
night valley), a morning and an evening peak and a midday plateau, each a
Gaussian bump repeated every 24 h so that midnight joins up. Its
antiderivative is closed-form (``erf``), so the energy of any interval is
exact and cheap: meters integrate only when asked.

A handful of curve archetypes are shared by all meters (a meter picks one by
its seed), so 2,000 meters cost 16 precomputed tables, not 2,000.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

SLOT_SECONDS = 900
"""The integration slot: 15 minutes, the load-profile interval."""
SLOTS_PER_DAY = 96
ARCHETYPES = 16

_SQRT_HALF_PI = math.sqrt(math.pi / 2)


@dataclass(frozen=True, slots=True)
class Bump:
    """A Gaussian bump of the curve: centre (h), width (h), height (share of peak)."""

    centre: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class LoadCurve:
    """Load as a share of the meter's peak power, by local hour of day."""

    base: float
    bumps: tuple[Bump, ...]
    slot_integrals: tuple[float, ...]
    """Integral over each 15-minute slot of the day, in hours (kWh per kW)."""
    edges: tuple[float, ...]
    """:meth:`integral` at each slot boundary (97 values)."""

    def at(self, hour: float) -> float:
        """The load (share of peak) at local hour ``hour`` in [0, 24)."""
        total = self.base
        for b in self.bumps:
            for shift in (-24.0, 0.0, 24.0):
                d = (hour - b.centre - shift) / b.width
                total += b.height * math.exp(-0.5 * d * d)
        return total

    def integral(self, hour: float) -> float:
        """Antiderivative of :meth:`at` from 0 to ``hour`` (hours, for 0 <= hour <= 24)."""
        total = self.base * hour
        for b in self.bumps:
            k = b.height * b.width * _SQRT_HALF_PI
            s = b.width * math.sqrt(2.0)
            for shift in (-24.0, 0.0, 24.0):
                c = b.centre + shift
                total += k * (math.erf((hour - c) / s) - math.erf(-c / s))
        return total


def _build_curve(base: float, bumps: tuple[Bump, ...]) -> LoadCurve:
    probe = LoadCurve(base, bumps, (), ())
    edges = tuple(probe.integral(i / 4) for i in range(SLOTS_PER_DAY + 1))
    integrals = tuple(edges[i + 1] - edges[i] for i in range(SLOTS_PER_DAY))
    return LoadCurve(base, bumps, integrals, edges)


@lru_cache(maxsize=ARCHETYPES)
def archetype(index: int) -> LoadCurve:
    """One of the shared curve shapes (index modulo :data:`ARCHETYPES`)."""
    rng = random.Random(7919 * (index % ARCHETYPES) + 1)
    bumps = (
        Bump(rng.uniform(7.0, 8.5), rng.uniform(1.0, 1.6), rng.uniform(0.55, 0.85)),
        Bump(rng.uniform(12.0, 14.0), rng.uniform(2.5, 3.5), rng.uniform(0.15, 0.3)),
        Bump(rng.uniform(18.5, 20.5), rng.uniform(1.5, 2.3), rng.uniform(0.8, 1.0)),
    )
    return _build_curve(rng.uniform(0.12, 0.25), bumps)


@dataclass(frozen=True, slots=True)
class TariffSchedule:
    """Which tariff (1 sharp, 2 peak, 3 flat, 4 valley) applies at each time of day.

    ``periods`` are ``(minute of day, tariff)`` pairs in increasing order, the
    first at minute 0; each holds until the next. Period starts must fall on
    15-minute boundaries (the integration slot).
    """

    periods: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not self.periods or self.periods[0][0] != 0:
            raise ValueError("tariff schedule must start at 00:00")
        last = -1
        for minute, tariff in self.periods:
            if minute <= last or minute >= 1440:
                raise ValueError(f"tariff schedule times must increase within the day: {minute}")
            if minute % 15:
                raise ValueError(
                    f"tariff period start {minute // 60:02d}:{minute % 60:02d} "
                    "is not on a 15-minute boundary"
                )
            if tariff not in (1, 2, 3, 4):
                raise ValueError(f"tariff must be 1..4, got {tariff}")
            last = minute

    @classmethod
    def parse(cls, entries: list[tuple[str, int]]) -> TariffSchedule:
        """From ``[("00:00", 4), ("08:00", 2), ...]``."""
        periods = []
        for text, tariff in entries:
            hh, _, mm = text.partition(":")
            if not (hh.isdigit() and mm.isdigit()) or int(hh) > 23 or int(mm) > 59:
                raise ValueError(f"tariff schedule time {text!r} is not HH:MM")
            periods.append((int(hh) * 60 + int(mm), int(tariff)))
        return cls(tuple(periods))

    def slot_tariffs(self) -> tuple[int, ...]:
        """Tariff index (0..3) of each 15-minute slot of the day."""
        out = []
        for slot in range(SLOTS_PER_DAY):
            minute = slot * 15
            current = self.periods[0][1]
            for start, tariff in self.periods:
                if start <= minute:
                    current = tariff
            out.append(current - 1)
        return tuple(out)


DEFAULT_TARIFFS = TariffSchedule.parse(
    [
        ("00:00", 4),
        ("08:00", 2),
        ("10:00", 1),
        ("11:00", 2),
        ("12:00", 3),
        ("17:00", 2),
        ("19:00", 1),
        ("21:00", 3),
        ("23:00", 4),
    ]
)
"""A typical schedule: valley at night, sharp inside the two peaks, flat between."""
