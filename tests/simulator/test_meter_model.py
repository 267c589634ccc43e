"""The meter model: deterministic, physically consistent, registers that add up."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest

from simulator import SimClock, SimMeter, TariffSchedule
from tests.simulator.conftest import START


def test_same_seed_same_values_whatever_the_query_history() -> None:
    a_clock, b_clock = SimClock(START, speed=0), SimClock(START, speed=0)
    a = SimMeter("000000000001", seed=7, clock=a_clock)
    b = SimMeter("000000000001", seed=7, clock=b_clock)
    # a is read often on the way, b only at the end: the result must not differ.
    for _ in range(200):
        a_clock.advance(137.3)
        a.values()
    b_clock.advance(200 * 137.3)
    assert a.values() == b.values()
    assert SimMeter("000000000001", seed=8, clock=b_clock).values() != b.values()


def test_energy_monotonic_and_tariffs_sum_to_total_over_a_week(clock: SimClock) -> None:
    meter = SimMeter("000000000001", seed=3, clock=clock)
    rng = random.Random(1)
    last = meter.values()
    week = 7 * 86_400.0
    elapsed = 0.0
    while elapsed < week:
        step = rng.choice((1.0, 59.0, 900.0, 3_600.0, 13_777.0))
        clock.advance(step)
        elapsed += step
        now = meter.values()
        tariffs = [now[f"energy_import_t{n}_kwh"] for n in range(1, 5)]
        assert sum(tariffs) == now["energy_import_total_kwh"]
        for key in ("energy_import_total_kwh", *(f"energy_import_t{n}_kwh" for n in range(1, 5))):
            assert now[key] >= last[key], key
            assert now[key] == now[key].quantize(Decimal("0.01"))
        last = now
    # Energy really accumulates: a few kW of peak load for a week is tens of kWh at least.
    first = SimMeter("000000000001", seed=3, clock=SimClock(START, speed=0)).values()
    assert last["energy_import_total_kwh"] - first["energy_import_total_kwh"] > 20


def test_each_tariff_grows_only_in_its_own_periods(clock: SimClock) -> None:
    schedule = TariffSchedule.parse([("00:00", 4), ("08:00", 2), ("12:00", 3), ("18:00", 1)])
    meter = SimMeter("000000000001", seed=5, clock=clock, tariffs=schedule)
    clock.set(START.replace(hour=16))  # 00:00 Shanghai
    before = meter.values()
    clock.advance(6 * 3600)  # 00:00 -> 06:00 local: valley only
    after = meter.values()
    assert after["energy_import_t4_kwh"] > before["energy_import_t4_kwh"]
    for n in (1, 2, 3):
        assert after[f"energy_import_t{n}_kwh"] == before[f"energy_import_t{n}_kwh"]


def test_daily_curve_has_peaks_and_a_night_valley(clock: SimClock) -> None:
    totals = {h: 0.0 for h in range(24)}
    for seed in range(20):
        meter = SimMeter(f"{seed:012d}", seed=seed, clock=clock)
        base = START.replace(hour=16).timestamp()  # local midnight
        for h in range(24):
            totals[h] += sum(
                meter.energy.power_kw(base + h * 3600 + m * 60) for m in range(0, 60, 5)
            )
    night = totals[3]
    assert totals[8] > 2 * night  # morning peak
    assert totals[20] > 2.5 * night  # evening peak
    assert totals[20] > totals[15]


def test_phase_values_agree_p_equals_u_i_pf(clock: SimClock) -> None:
    meter = SimMeter("000000000001", seed=11, clock=clock)
    for _ in range(50):
        clock.advance(1234)
        v = meter.values()
        total = Decimal(0)
        for p in (1, 2, 3):
            u, i, pf = v[f"voltage_l{p}_v"], v[f"current_l{p}_a"], v[f"power_factor_l{p}"]
            p_kw = v[f"power_active_l{p}_kw"]
            assert abs(u * i * pf / 1000 - p_kw) <= Decimal("0.00005")
            assert Decimal(200) < u < Decimal(250)
            assert Decimal("0.8") < pf <= 1
            total += p_kw
        assert v["power_active_total_kw"] == total
        assert abs(v["frequency_hz"] - 50) <= Decimal("0.1")


def test_clock_drift_and_broadcast_set(clock: SimClock) -> None:
    meter = SimMeter("000000000001", seed=1, clock=clock, drift_ppm=100)
    true_local = START.replace(tzinfo=None) + timedelta(hours=8)
    assert abs((meter.meter_time() - true_local).total_seconds()) < 5
    clock.advance(10 * 86_400)  # 100 ppm over 10 days = 86.4 s
    drift = (meter.meter_time() - (true_local + timedelta(days=10))).total_seconds()
    assert 80 < drift < 92
    meter.set_clock(true_local + timedelta(days=10))
    assert abs((meter.meter_time() - (true_local + timedelta(days=10))).total_seconds()) < 0.01
    meter.set_fault("clock_drift", seconds=600)
    assert 599 < (meter.meter_time() - (true_local + timedelta(days=10))).total_seconds() < 601
    meter.clear_faults()
    assert abs((meter.meter_time() - (true_local + timedelta(days=10))).total_seconds()) < 0.01


def test_frozen_records_match_the_registers_at_their_time(clock: SimClock) -> None:
    meter = SimMeter("000000000001", seed=2, clock=clock, drift_ppm=0, history_days=3)
    clock.advance(2 * 86_400)
    latest = meter.freeze(1)
    assert latest is not None
    at, energies = latest
    assert (at.hour, at.minute) == (0, 0)
    assert energies.items() >= meter.energy_values(meter.local_to_sim(at)).items()
    assert energies["energy_export_total_kwh"] == meter.values()["energy_export_total_kwh"]
    older = meter.freeze(2)
    assert older is not None
    assert older[0] == at - timedelta(days=1)
    assert older[1]["energy_import_total_kwh"] < energies["energy_import_total_kwh"]
    hourly = meter.freeze(5, hourly=True)
    assert hourly is not None
    assert hourly[0].minute == 0
    assert meter.freeze(40) is None  # beyond what the meter keeps
    records = meter.load_profile(at, 8)
    assert [r[0] for r in records] == [at + timedelta(minutes=15 * k) for k in range(8)]
    totals = [r[1]["energy_import_total_kwh"] for r in records]
    assert totals == sorted(totals)


def test_counter_reset_and_spike_faults(clock: SimClock) -> None:
    meter = SimMeter("000000000001", seed=4, clock=clock)
    clock.advance(3600)
    before = meter.value("energy_import_total_kwh")
    meter.set_fault("spike", kwh=5000)
    assert meter.value("energy_import_total_kwh") == before + 5000
    meter.clear_faults()
    assert meter.value("energy_import_total_kwh") == before
    meter.set_fault("counter_reset")
    after = meter.value("energy_import_total_kwh")
    assert after < Decimal("0.05")
    clock.advance(3600)
    assert meter.value("energy_import_total_kwh") > after  # counts up again from zero
    meter.clear_faults()
    assert meter.value("energy_import_total_kwh") < before  # a replaced meter stays replaced


def test_unknown_fault_is_rejected_naming_the_meter(clock: SimClock) -> None:
    meter = SimMeter("000000000009", seed=1, clock=clock)
    with pytest.raises(ValueError, match=r"000000000009.*'melt'"):
        meter.set_fault("melt")


def test_idle_fleet_is_cheap(clock: SimClock) -> None:
    import time

    t0 = time.process_time()
    meters = [SimMeter(f"{n:012d}", seed=n, clock=clock) for n in range(2000)]
    clock.advance(3600)
    for m in meters:
        m.tariff_hundredths()
    assert time.process_time() - t0 < 5.0
