"""The daily figures computed from hand-made days: a known peak, a flat day, a gap,
DST and DST-free zones, a meter without freezes, a counter reset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from gateway.analytics import Point, compute_daily, day_bounds, derived_readings
from gateway.model import Quality

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 3, 10)
TOTAL = "energy_import_total_kwh"


def tariff_of(minute: int) -> int:
    """0..3: valley at night, sharp 19-21, peak 8-12 and 17-19, flat otherwise."""
    hour = minute // 60
    if hour < 8 or hour >= 23:
        return 3
    if 19 <= hour < 21:
        return 0
    if 8 <= hour < 12 or 17 <= hour < 19:
        return 1
    return 2


def make_day(
    energies: Sequence[Decimal],
    *,
    day: date = DAY,
    zone: ZoneInfo = SHANGHAI,
    start: Sequence[Decimal] = (
        Decimal("100.00"),
        Decimal("200.00"),
        Decimal("300.00"),
        Decimal("400.00"),
    ),
    keep: Callable[[int], bool] = lambda i: True,
    offset_ms: int = 0,
) -> tuple[list[Point], list[Decimal]]:
    """Load-profile totals at every boundary ``i`` kept, tariff registers at both midnights
    (the daily freezes); returns the points and the tariff registers at the day's end."""
    start_ms, _ = day_bounds(day, zone)
    regs = list(start)
    points = [Point(f"energy_import_t{n + 1}_kwh", start_ms + offset_ms, regs[n]) for n in range(4)]
    points.append(Point(TOTAL, start_ms + offset_ms, sum(regs, Decimal(0))))
    for i, e in enumerate(energies):
        ts = start_ms + i * 900_000
        local = datetime.fromtimestamp(ts / 1000, zone)
        regs[tariff_of(local.hour * 60 + local.minute)] += e
        if keep(i + 1) or i + 1 == len(energies):
            points.append(
                Point(
                    TOTAL,
                    ts + 900_000 + (offset_ms if i + 1 == len(energies) else 0),
                    sum(regs, Decimal(0)),
                )
            )
    end_ms = start_ms + len(energies) * 900_000 + offset_ms
    points += [Point(f"energy_import_t{n + 1}_kwh", end_ms, regs[n]) for n in range(4)]
    return points, regs


def test_a_day_with_a_known_peak_at_a_known_time() -> None:
    energies = [Decimal("0.25")] * 96
    energies[76] = Decimal("2.00")  # 19:00-19:15: 8 kW
    points, end = make_day(energies)
    f = compute_daily("m1", DAY, SHANGHAI, points)
    assert f.max_demand_kw == Decimal("8.00")
    assert f.max_demand_at == datetime(2026, 3, 10, 19, 15, tzinfo=SHANGHAI)
    assert f.energy_kwh["total"] == Decimal("25.75")
    assert f.energy_kwh["sharp"] == Decimal("2.00") + 7 * Decimal("0.25")
    assert f.energy_kwh["valley"] == 36 * Decimal("0.25")
    assert [f.energy_kwh[n] for n in ("sharp", "peak", "flat", "valley")] == [
        e - s for e, s in zip(end, (100, 200, 300, 400), strict=True)
    ]
    # mean demand 25.75 kWh / 24 h = 1.0729 kW over a maximum of 8 kW
    assert f.load_factor == Decimal("0.1341")
    assert f.valley_share == Decimal("0.3495")
    assert f.completeness == 1
    assert f.intervals_expected == f.intervals_present == 96
    assert f.quality is Quality.OK


def test_a_flat_day_has_load_factor_one() -> None:
    points, _ = make_day([Decimal("0.50")] * 96)
    f = compute_daily("m1", DAY, SHANGHAI, points)
    assert f.load_factor == 1
    assert f.max_demand_kw == Decimal("2.00")
    assert f.max_demand_at == datetime(2026, 3, 10, 0, 15, tzinfo=SHANGHAI)  # the first of equals
    assert f.energy_kwh["total"] == Decimal("48.00")
    assert f.valley_share == Decimal("0.3750")  # 9 of 24 hours
    assert f.quality is Quality.OK


def test_an_unfilled_gap_makes_the_day_estimated_but_keeps_the_freezes_exact() -> None:
    energies = [Decimal("0.30")] * 96
    # boundaries 41..48 missing: intervals 41..49 (10:00-12:15) have an unknown end
    points, end = make_day(energies, keep=lambda i: not 41 <= i <= 48)
    f = compute_daily("m1", DAY, SHANGHAI, points)
    assert f.intervals_present == 96 - 9
    assert f.completeness == Decimal("0.9062")
    assert f.quality is Quality.ESTIMATED
    assert any("9 of 96 intervals missing" in n for n in f.notes)
    assert f.energy_kwh["peak"] == end[1] - Decimal("200.00")
    assert f.energy_kwh["total"] == Decimal("28.80")
    readings = derived_readings(f, received_ms=0)
    assert {r.quality for r in readings} == {Quality.ESTIMATED}
    values = {r.key: r.value for r in readings}
    assert values["daily_completeness"] == Decimal("0.9062")
    assert values["daily_energy_import_t4_kwh"] == f.energy_kwh["valley"]
    assert all(r.ts_ms == f.start_ms and r.interval_s == 86_400 for r in readings)


def test_freezes_a_little_off_midnight_are_still_the_days_registers() -> None:
    # A meter clock 1.36 s fast: its midnight freeze is stamped 23:59:58.64 UTC+8.
    points, end = make_day([Decimal("0.11")] * 96, offset_ms=-1360)
    f = compute_daily("m1", DAY, SHANGHAI, points)
    assert f.energy_kwh["flat"] == end[2] - Decimal("300.00")
    assert f.quality is Quality.OK


def test_a_dst_day_has_fewer_intervals() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    spring = date(2026, 3, 29)  # 23 hours
    points, _ = make_day([Decimal("0.10")] * 92, day=spring, zone=berlin)
    f = compute_daily("m1", spring, berlin, points)
    assert f.intervals_expected == 92
    assert f.completeness == 1
    assert f.energy_kwh["total"] == Decimal("9.20")
    # Asia/Shanghai keeps no DST: the same date is 96 intervals long.
    assert compute_daily("m1", spring, SHANGHAI, []).intervals_expected == 96


def test_a_meter_without_freezes_uses_the_polls_around_midnight() -> None:
    start_ms, end_ms = day_bounds(DAY, SHANGHAI)
    # Polled every minute at :30 s; 0.01 kWh a minute, all registers in the valley at night.
    points = []
    for minute in range(-20, 24 * 60 + 20):
        ts = start_ms + minute * 60_000 + 30_000
        total = Decimal("500.00") + Decimal("0.01") * minute
        points.append(Point(TOTAL, ts, total))
        points.append(Point("energy_import_t4_kwh", ts, total - Decimal("300.00")))
        for n in (1, 2, 3):
            points.append(Point(f"energy_import_t{n}_kwh", ts, Decimal(100)))
    f = compute_daily("m1", DAY, SHANGHAI, points)
    # The poll 30 s before each midnight stands for it: the difference of those registers.
    assert f.energy_kwh["total"] == Decimal("14.40")
    assert f.energy_kwh["valley"] == Decimal("14.40")
    assert f.energy_kwh["sharp"] == 0
    assert f.valley_share == 1
    assert f.completeness == 1
    assert f.quality is Quality.OK
    # Polled every 5 minutes at 2.5 min past: midnights interpolated, the day estimated.
    sparse = [p for p in points if (p.ts_ms - start_ms - 30_000) % 300_000 == 120_000]
    g = compute_daily("m1", DAY, SHANGHAI, sparse)
    assert g.energy_kwh["total"] == Decimal("14.40")
    assert g.completeness == 1
    assert g.quality is Quality.ESTIMATED
    assert any("interpolated" in n for n in g.notes)
    assert end_ms - start_ms == 86_400_000


def test_a_counter_reset_is_not_a_demand_and_nothing_known_is_no_data() -> None:
    energies = [Decimal("0.20")] * 96
    points, _ = make_day(energies)
    start_ms, _ = day_bounds(DAY, SHANGHAI)
    reset_at = start_ms + 50 * 900_000
    reset = [
        Point(p.key, p.ts_ms, p.value - Decimal("500") if p.ts_ms >= reset_at else p.value)
        for p in points
    ]
    f = compute_daily("m1", DAY, SHANGHAI, reset)
    assert f.intervals_present == 95
    assert f.max_demand_kw == Decimal("0.80")
    assert f.quality is Quality.ESTIMATED
    assert f.energy_kwh["total"] is None  # not a negative day
    assert any("fell during the day" in n for n in f.notes)
    empty = compute_daily("m1", DAY, SHANGHAI, [])
    assert not empty.has_data
    assert empty.energy_kwh["total"] is None
    assert empty.completeness == 0


def test_readings_the_validator_doubted_are_left_out() -> None:
    points, _ = make_day([Decimal("0.25")] * 96)
    start_ms, _ = day_bounds(DAY, SHANGHAI)
    at_noon = start_ms + 48 * 900_000
    spiked = [
        Point(p.key, p.ts_ms, p.value + 5000, Quality.SUSPECT_SPIKE) if p.ts_ms == at_noon else p
        for p in points
    ]
    f = compute_daily("m1", DAY, SHANGHAI, spiked)
    assert f.max_demand_kw == Decimal("1.00")  # not 20,000 kW
    assert f.intervals_present == 94  # the two intervals around the doubted reading
    assert f.energy_kwh["total"] == Decimal("24.00")
    assert any("flagged" in n for n in f.notes)


def test_points_of_neighbouring_days_do_not_leak_in() -> None:
    points, _ = make_day([Decimal("0.25")] * 96)
    later = [Point(p.key, p.ts_ms + 86_400_000 * 2, p.value + 1000) for p in points]
    f = compute_daily("m1", DAY, SHANGHAI, points + later)
    assert f.energy_kwh["total"] == Decimal("24.00")
    assert f.max_demand_at is not None
    assert f.max_demand_at - datetime(2026, 3, 10, tzinfo=SHANGHAI) == timedelta(minutes=15)
