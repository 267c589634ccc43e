"""Energy registers: the load curve integrated over simulated time, per tariff.

The integration is exact and lazy. Each 15-minute slot's energy is
``peak_kw * noise(slot) * integral(curve over slot)``; the energy at an
instant is the sum of the whole slots before it (added one by one, in order,
from a cached day start) plus the exact partial integral of the current slot.
The result depends only on the instant, never on when or how often it was
asked, so meters are deterministic from their seed and cost nothing while
nobody reads them.

Registers are integer hundredths of kWh, per tariff, floored from the
accumulators; the total is their sum, so tariffs always add up to the total.
"""

from __future__ import annotations

import math
import random

from simulator.meter.curve import SLOT_SECONDS, SLOTS_PER_DAY, LoadCurve

DAY = 86_400


class EnergyIntegrator:
    """Per-tariff import energy of one meter as a function of sim time."""

    __slots__ = (
        "_curve",
        "_day_starts",
        "_epoch_day",
        "_noise",
        "_offset",
        "_peak_kw",
        "_prefix",
        "_seed",
        "_tariffs",
        "noise_amplitude",
    )

    def __init__(
        self,
        *,
        seed: int,
        curve: LoadCurve,
        tariffs: tuple[int, ...],
        peak_kw: float,
        utc_offset: int,
        epoch: float,
        initial_kwh: tuple[float, float, float, float],
        noise_amplitude: float = 0.15,
    ) -> None:
        self._seed = seed
        self._curve = curve
        self._tariffs = tariffs
        self._peak_kw = peak_kw
        self._offset = utc_offset
        self.noise_amplitude = noise_amplitude
        self._epoch_day = int((epoch + utc_offset) // DAY)
        self._day_starts: dict[int, tuple[float, ...]] = {self._epoch_day: tuple(initial_kwh)}
        self._noise: dict[int, list[float]] = {}
        # (day, slot, energies at the start of that slot)
        self._prefix: tuple[int, int, tuple[float, ...]] = (
            self._epoch_day,
            0,
            tuple(initial_kwh),
        )

    @property
    def epoch(self) -> float:
        """The first instant with energy data (UTC seconds): a local midnight."""
        return float(self._epoch_day * DAY - self._offset)

    def noise(self, day: int) -> list[float]:
        """Per-slot load factors of a local day (deterministic from the seed)."""
        factors = self._noise.get(day)
        if factors is None:
            rng = random.Random(self._seed * 1_000_003 + day)
            level = rng.uniform(0.85, 1.15)
            amp = self.noise_amplitude
            factors = [level * (1.0 + amp * (2.0 * rng.random() - 1.0)) for _ in range(96)]
            if len(self._noise) > 4:
                self._noise.clear()
            self._noise[day] = factors
        return factors

    def _add_slots(self, energies: list[float], day: int, first: int, stop: int) -> None:
        noise = self.noise(day)
        integrals = self._curve.slot_integrals
        tariffs = self._tariffs
        peak = self._peak_kw
        for j in range(first, stop):
            energies[tariffs[j]] += (noise[j] * peak) * integrals[j]

    def _day_start(self, day: int) -> tuple[float, ...]:
        cached = self._day_starts.get(day)
        if cached is not None:
            return cached
        known = max(d for d in self._day_starts if d < day)
        energies = list(self._day_starts[known])
        for d in range(known, day):
            self._add_slots(energies, d, 0, SLOTS_PER_DAY)
            self._day_starts[d + 1] = tuple(energies)
        return self._day_starts[day]

    def _slot_start(self, day: int, slot: int) -> tuple[float, ...]:
        pday, pslot, penergy = self._prefix
        if pday == day and pslot == slot:
            return penergy
        if pday == day and pslot < slot:
            energies = list(penergy)
            self._add_slots(energies, day, pslot, slot)
        else:
            energies = list(self._day_start(day))
            self._add_slots(energies, day, 0, slot)
        result = tuple(energies)
        self._prefix = (day, slot, result)
        return result

    def kwh(self, ts: float) -> tuple[float, ...]:
        """Import energy per tariff (kWh, 4 floats) at UTC instant ``ts``."""
        local = ts + self._offset
        day = int(local // DAY)
        if day < self._epoch_day:
            return self._day_starts[self._epoch_day]
        seconds = local - day * DAY
        slot = int(seconds // SLOT_SECONDS)
        start = self._slot_start(day, slot)
        hour = seconds / 3600.0
        curve = self._curve
        partial = (self.noise(day)[slot] * self._peak_kw) * (
            curve.integral(hour) - curve.edges[slot]
        )
        if partial <= 0.0:
            return start
        energies = list(start)
        energies[self._tariffs[slot]] += partial
        return tuple(energies)

    def hundredths(self, ts: float) -> tuple[int, int, int, int]:
        """Tariff registers 1..4 in integer hundredths of kWh at ``ts``."""
        e = self.kwh(ts)
        return (
            math.floor(e[0] * 100),
            math.floor(e[1] * 100),
            math.floor(e[2] * 100),
            math.floor(e[3] * 100),
        )

    def power_kw(self, ts: float) -> float:
        """Total active power (kW) at ``ts``: the derivative of the energy."""
        local = ts + self._offset
        day = int(local // DAY)
        seconds = local - day * DAY
        slot = int(seconds // SLOT_SECONDS)
        return self.noise(day)[slot] * self._peak_kw * self._curve.at(seconds / 3600.0)

    def tariff_at(self, ts: float) -> int:
        """Tariff index (0..3) in force at ``ts``."""
        seconds = (ts + self._offset) % DAY
        return self._tariffs[int(seconds // SLOT_SECONDS)]
