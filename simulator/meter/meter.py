"""A simulated electricity meter: registers, instantaneous values, clock, records.

Everything is computed on request from simulated time (see
:mod:`simulator.meter.energy`), so an idle meter costs no CPU. The meter is
deterministic from its seed: two meters with the same seed, clock and time
zone read the same values at the same instant.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from simulator.clock import SimClock
from simulator.meter.curve import DEFAULT_TARIFFS, TariffSchedule, archetype
from simulator.meter.energy import EnergyIntegrator
from simulator.meter.faults import METER_FAULTS, ActiveFault, FaultSet

ENERGY_KEYS = (
    "energy_import_t1_kwh",
    "energy_import_t2_kwh",
    "energy_import_t3_kwh",
    "energy_import_t4_kwh",
)
FREEZE_KEYS = ("energy_import_total_kwh", *ENERGY_KEYS)
"""The keys of a frozen import energy record: total, then tariffs 1..4."""
LOAD_PROFILE_BLOCKS = frozenset({1, 2, 3, 4})
"""The load-profile blocks the meters record: the ones their physics covers (voltage,
current and frequency; powers; power factors; energies), not the four reactive
quadrants or demand."""


def _d(n: int, exp: int) -> Decimal:
    return Decimal(n).scaleb(exp)


def standard_offset(tz: ZoneInfo) -> int:
    """The zone's standard (non-DST) UTC offset in seconds, on a 15-minute boundary."""
    offsets = []
    for month in (1, 7):
        off = tz.utcoffset(datetime(2026, month, 1))
        offsets.append(int(off.total_seconds()) if off is not None else 0)
    offset = min(offsets)
    if offset % 900:
        raise ValueError(f"time zone {tz.key} has an offset that is not whole quarter hours")
    return offset


class SimMeter:
    """One simulated meter.

    ``address`` is the nameplate address (DL/T 645) or any id; ``seed``
    chooses its load curve, size, voltages and power factors; ``tz`` is the
    zone of its own clock. ``peak_kw`` overrides the seeded peak load;
    ``drift_ppm`` the seeded clock drift; ``history_days`` bounds the records
    it keeps (daily/hourly freezes and load profile); ``load_profile=False``
    plays a meter whose load profile is not configured; ``phases=1`` a
    single-phase meter (phase 1 carries the load; no phase 2 or 3 values).
    """

    def __init__(
        self,
        address: str,
        seed: int = 0,
        clock: SimClock | None = None,
        tz: str = "Asia/Shanghai",
        *,
        peak_kw: float | None = None,
        tariffs: TariffSchedule = DEFAULT_TARIFFS,
        history_days: int = 7,
        drift_ppm: float | None = None,
        protocol: str = "dlt645-2007",
        load_profile: bool = True,
        phases: int = 3,
    ) -> None:
        if phases not in (1, 3):
            raise ValueError(f"meter {address}: phases {phases} is not 1 or 3")
        self.address = address
        self.phases = phases
        self.seed = seed
        self.clock = clock if clock is not None else SimClock()
        self.tz = ZoneInfo(tz)
        self.protocol = protocol
        self.history_days = history_days
        self.keeps_load_profile = load_profile
        """False: a meter without a configured load profile (reads of it find no data)."""
        self.last_served: dict[int, list[Decimal]] = {}
        """DI (or register address) -> values of the last reply this meter sent."""
        self.faults = FaultSet(METER_FAULTS, f"meter {address}")
        self.fixed: dict[str, Decimal] = {}
        """Quantity key -> a pinned value, served instead of the model's."""
        rng = random.Random(seed)
        self.peak_kw = peak_kw if peak_kw is not None else rng.uniform(3.0, 12.0)
        total0 = rng.uniform(500.0, 30_000.0)
        shares = [s * rng.uniform(0.8, 1.2) for s in (0.1, 0.35, 0.3, 0.25)]
        norm = sum(shares)
        initial = tuple(math.floor(total0 * s / norm * 100) / 100 for s in shares)
        self._phase_share = [rng.uniform(0.28, 0.38) for _ in range(3)]
        share_sum = sum(self._phase_share)
        self._phase_share = [s / share_sum for s in self._phase_share]
        if phases == 1:
            self._phase_share = [1.0]  # after the draws: the other values stay as seeded
        self._pf = [rng.uniform(0.88, 0.985) for _ in range(3)]
        mean_pf = sum(self._pf) / 3
        self._tan_phi = Decimal(math.sqrt(1 - mean_pf**2) / mean_pf).quantize(Decimal("0.0001"))
        self._volt = [rng.uniform(224.0, 234.0) for _ in range(3)]
        self._phi = [rng.uniform(0, 2 * math.pi) for _ in range(4)]
        self._export_h = int(rng.choice((0, 0, 0, rng.uniform(0, 500))) * 100)
        self._clock_offset = rng.uniform(-3.0, 3.0)
        self.drift_ppm = drift_ppm if drift_ppm is not None else rng.uniform(-15.0, 15.0)
        self._clock_ref = self.clock.start.timestamp()
        self._reset_base = (0, 0, 0, 0)
        self.energy = EnergyIntegrator(
            seed=seed,
            curve=archetype(rng.randrange(1 << 16)),
            tariffs=tariffs.slot_tariffs(),
            peak_kw=self.peak_kw,
            utc_offset=standard_offset(self.tz),
            epoch=self.clock.start.timestamp() - history_days * 86_400,
            initial_kwh=initial,  # type: ignore[arg-type]
        )

    def __repr__(self) -> str:
        return f"SimMeter({self.address!r}, seed={self.seed})"

    # ----------------------------------------------------------------- faults

    def set_fault(self, fault: str, duration: float | None = None, **params: Any) -> None:
        """Make the meter misbehave (see :data:`METER_FAULTS`), optionally for a while.

        ``no_answer``; ``slow(delay=1.0)``; ``bad_checksum``;
        ``wrong_address(address=...)``; ``garbage(length=8, only=False)``;
        ``counter_reset`` (the meter was replaced: its registers restart at 0
        now, permanently); ``spike(kwh=5000)`` (energy registers jump while it
        lasts); ``clock_drift(seconds=300)`` (the meter clock is off by that);
        ``profile_stuck`` (every load-profile read gets the newest record, whatever
        the start asked for).
        """
        if fault == "counter_reset":
            self.faults.set(fault, duration, **params)
            self._reset_base = self._raw_hundredths(self.clock.timestamp())
            self.faults.clear("counter_reset")
            return
        self.faults.set(fault, duration, **params)

    def clear_faults(self, fault: str | None = None) -> None:
        """Clear one fault or all (a counter reset stays: the meter was replaced)."""
        self.faults.clear(fault)

    def fault(self, name: str) -> ActiveFault | None:
        """The fault if it is in force now."""
        return self.faults.get(name)

    # ------------------------------------------------------------- registers

    def _raw_hundredths(self, ts: float) -> tuple[int, int, int, int]:
        return self.energy.hundredths(ts)

    def tariff_hundredths(self, ts: float | None = None) -> tuple[int, int, int, int]:
        """Import tariff registers 1..4 in hundredths of kWh, faults applied."""
        now = self.clock.timestamp() if ts is None else ts
        regs = self.energy.hundredths(now)
        base = self._reset_base
        if any(base):
            regs = (regs[0] - base[0], regs[1] - base[1], regs[2] - base[2], regs[3] - base[3])
        spike = self.faults.get("spike") if self.faults else None
        if spike is not None:
            extra = int(Decimal(str(spike.params.get("kwh", 5000))) * 100)
            idx = self.energy.tariff_at(now)
            regs = tuple(r + extra if i == idx else r for i, r in enumerate(regs))  # type: ignore[assignment]
        return regs

    def energy_values(self, ts: float | None = None) -> dict[str, Decimal]:
        """Import total and tariffs 1..4 (kWh) at ``ts`` (default now)."""
        regs = self.tariff_hundredths(ts)
        out = {"energy_import_total_kwh": _d(sum(regs), -2)}
        for key, reg in zip(ENERGY_KEYS, regs, strict=True):
            out[key] = _d(reg, -2)
        return out

    def instant_values(self, ts: float | None = None) -> dict[str, Decimal]:
        """Voltages, currents, powers, power factors and frequency at ``ts``.

        Quantised to the DL/T 645 register resolution first, and phase power
        computed from the quantised U, I and PF, so ``P = U * I * PF`` holds
        to the last digit (0.1 V, 0.001 A, 0.001, 0.0001 kW).
        """
        now = self.clock.timestamp() if ts is None else ts
        total_kw = self.energy.power_kw(now)
        phi = self._phi
        out: dict[str, Decimal] = {}
        p_sum = 0
        s_sum = 0.0
        q_sum = 0.0
        for p in range(self.phases):
            u10 = round(
                (self._volt[p] + 2.0 * math.sin(now / 3600.0 + phi[p]) + 0.6 * math.sin(now / 37.0))
                * 10
            )
            pf_m = min(999, round((self._pf[p] + 0.01 * math.sin(now / 600.0 + phi[p])) * 1000))
            p_kw = total_kw * self._phase_share[p]
            i_m = round(p_kw * 1e6 / (u10 / 10 * pf_m / 1000))
            p_t = (u10 * i_m * pf_m + 500_000) // 1_000_000  # 0.0001 kW
            p_sum += p_t
            s_kva = u10 * i_m / 1e7
            s_sum += s_kva
            q_kvar = s_kva * math.sqrt(max(0.0, 1 - (pf_m / 1000) ** 2))
            q_sum += q_kvar
            n = p + 1
            out[f"power_reactive_l{n}_kvar"] = _d(round(q_kvar * 10_000), -4)
            out[f"voltage_l{n}_v"] = _d(u10, -1)
            out[f"current_l{n}_a"] = _d(i_m, -3)
            out[f"power_factor_l{n}"] = _d(pf_m, -3)
            out[f"power_active_l{n}_kw"] = _d(p_t, -4)
        out["power_active_total_kw"] = _d(p_sum, -4)
        out["power_reactive_total_kvar"] = _d(round(q_sum * 10_000), -4)
        out["power_apparent_total_kva"] = _d(round(s_sum * 10_000), -4)
        pf_total = round(p_sum / 10_000 / s_sum * 1000) if s_sum > 0 else 1000
        out["power_factor_total"] = _d(min(pf_total, 1000), -3)
        out["frequency_hz"] = _d(round((50.0 + 0.04 * math.sin(now / 53.0 + phi[3])) * 100), -2)
        return out

    def values(self, ts: float | None = None) -> dict[str, Decimal]:
        """Every quantity this meter offers, at sim time ``ts`` (default now)."""
        out = self.model_values(ts)
        if self.fixed:
            out.update(self.fixed)
        return out

    def model_values(self, ts: float | None = None) -> dict[str, Decimal]:
        """Every quantity of the model at ``ts``, without the pinned ones: what the
        meter's records (freezes, load profile) stored at that time."""
        now = self.clock.timestamp() if ts is None else ts
        out = self.energy_values(now)
        export = _d(self._export_h, -2)
        out["energy_export_total_kwh"] = export
        out["energy_combined_total_kwh"] = out["energy_import_total_kwh"] + export
        # Inductive loads: reactive import energy follows active import at the
        # meter's mean tan(phi); nothing is exported reactively.
        kvarh = out["energy_import_total_kwh"] * self._tan_phi
        out["energy_reactive_import_total_kvarh"] = kvarh.quantize(Decimal("0.01"), ROUND_FLOOR)
        out["energy_reactive_export_total_kvarh"] = Decimal("0.00")
        for n in range(1, 5):
            out[f"energy_combined_t{n}_kwh"] = out[f"energy_import_t{n}_kwh"]
            # Export (a small fixed amount) was all registered in tariff 1.
            out[f"energy_export_t{n}_kwh"] = export if n == 1 else Decimal("0.00")
        out.update(self.instant_values(now))
        drift = self.meter_timestamp(now) - now
        out["meter_clock_drift_s"] = Decimal(round(drift))
        for n in range(1, 8):
            out[f"status_word_{n}"] = Decimal(0)
        return out

    def value(self, key: str, ts: float | None = None) -> Decimal:
        """One quantity at ``ts``; :class:`KeyError` naming the meter if unknown."""
        if key in self.fixed:
            return self.fixed[key]
        values = self.values(ts)
        if key not in values:
            raise KeyError(f"meter {self.address} has no quantity {key!r}")
        return values[key]

    def fix(self, key: str, value: Decimal | str | int) -> None:
        """Pin a quantity to a fixed value (for byte-exact test vectors)."""
        self.fixed[key] = Decimal(value)

    def unfix(self, key: str | None = None) -> None:
        """Unpin one quantity or all."""
        if key is None:
            self.fixed.clear()
        else:
            self.fixed.pop(key, None)

    # ----------------------------------------------------------------- clock

    def meter_timestamp(self, ts: float | None = None) -> float:
        """The meter's clock as UTC seconds (sim time plus offset and drift)."""
        now = self.clock.timestamp() if ts is None else ts
        t = now + self._clock_offset + self.drift_ppm * 1e-6 * (now - self._clock_ref)
        drift = self.faults.get("clock_drift") if self.faults else None
        if drift is not None:
            t += float(drift.params.get("seconds", 300))
        return t

    def meter_time(self, ts: float | None = None) -> datetime:
        """The meter's clock as naive local time, as it would display it."""
        return datetime.fromtimestamp(self.meter_timestamp(ts), self.tz).replace(tzinfo=None)

    def set_clock(self, local: datetime) -> None:
        """Set the meter clock to ``local`` (naive meter-local time), e.g. by broadcast."""
        now = self.clock.timestamp()
        target = local.replace(tzinfo=self.tz).timestamp()
        self._clock_offset = target - now
        self._clock_ref = now

    def local_to_sim(self, local: datetime, ts: float | None = None) -> float:
        """The sim instant at which the meter clock showed ``local`` (naive)."""
        now = self.clock.timestamp() if ts is None else ts
        return local.replace(tzinfo=self.tz).timestamp() - (self.meter_timestamp(now) - now)

    # --------------------------------------------------------------- records

    def freeze(self, n: int, hourly: bool = False) -> tuple[datetime, dict[str, Decimal]] | None:
        """The ``n``-th last daily (or hourly) frozen energy record (import and export
        registers), or None.

        Meters freeze at midnight (or each full hour) of their own clock; n=1
        is the most recent. None when ``n`` is beyond what the meter keeps.
        """
        limit = self.history_days * (24 if hourly else 1)
        if not 1 <= n <= limit:
            return None
        now_local = self.meter_time()
        if hourly:
            at = now_local.replace(minute=0, second=0, microsecond=0) - timedelta(hours=n - 1)
        else:
            at = now_local.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
                days=n - 1
            )
        ts = self.local_to_sim(at)
        if ts < self.energy.epoch:
            return None
        values = self.model_values(ts)
        return at, {k: v for k, v in values.items() if k.startswith("energy_")}

    def load_profile(
        self, start: datetime, count: int
    ) -> list[tuple[datetime, dict[str, Decimal]]]:
        """15-minute load records from the first boundary at or after ``start`` (meter time).

        At most ``count`` records, none later than the meter's clock now, none
        before the meter's history begins. Each holds every quantity of
        :meth:`model_values` at its time; the responder picks the recorded fields.
        """
        if self.faults and self.faults.get("profile_stuck") is not None:
            newest = self.meter_time()
            start = newest.replace(minute=newest.minute - newest.minute % 15, second=0)
            start = start.replace(microsecond=0)
            count = 1
        first = start.replace(second=0, microsecond=0)
        if first.minute % 15 or start.second or start.microsecond:
            first += timedelta(minutes=15 - first.minute % 15)
            first = first.replace(second=0)
        now_local = self.meter_time()
        now = self.clock.timestamp()
        records: list[tuple[datetime, dict[str, Decimal]]] = []
        at = first
        while len(records) < count and at <= now_local:
            ts = self.local_to_sim(at, now)
            if ts >= self.energy.epoch:
                records.append((at, self.model_values(ts)))
            at += timedelta(minutes=15)
        return records
