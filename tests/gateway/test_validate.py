"""Validation flags what looks wrong and never drops a reading.

The write path (validator, then a real buffer) as the daemon wires it; what it
flagged is read back from the buffer as a sink would read it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.buffer import Buffer, JobStore, Outcome, ReadingRow, ReadingValues, WriteJob
from gateway.config.northbound import BufferConfig
from gateway.config.validation import RangeConfig, ValidationConfig, ValidationOverride
from gateway.metrics import Metrics
from gateway.model import Event, EventKind, Quality, Reading, TimeSource
from gateway.validate import Limits, Validator, check
from gateway.writepath import WritePath

HOUR = 3_600_000
T0 = 1_800_000_000_000
CONC = TimeSource.CONCENTRATOR


def energy(value: str, ts: int, meter: str = "m1", source: TimeSource = TimeSource.POLL) -> Reading:
    return Reading(meter, "energy_import_total_kwh", Decimal(value), "kWh", ts, source, ts, "bus")


@pytest_asyncio.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    buf = await Buffer.open(str(tmp_path / "b.sqlite"), BufferConfig(), Metrics())
    await buf.register_sink("check")
    yield buf
    await buf.close()


async def stored(buf: Buffer) -> tuple[list[ReadingRow], list[str]]:
    batch = await buf.read("check", 0, 10_000)
    return batch.readings, [e[1] for e in batch.events]


def qualities(rows: list[ReadingRow]) -> list[Quality]:
    return [Quality(r[9]) for r in rows]


def checked(store: JobStore, config: ValidationConfig | None = None, **kw: Any) -> WritePath:
    """The write path over ``store``, with a validator, as the daemon wires it."""
    return WritePath(store, Validator(config, **kw))


async def run(buf: Buffer, *readings: Reading, config: ValidationConfig | None = None) -> None:
    v = checked(buf, config)
    for r in readings:
        await v.accept([r])


@pytest.mark.asyncio
async def test_rising_register_is_ok(buffer: Buffer) -> None:
    await run(buffer, energy("100.00", T0), energy("101.50", T0 + HOUR))
    rows, events = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.OK]
    assert [r[3] for r in rows] == ["100.00", "101.50"]
    assert events == []


@pytest.mark.asyncio
async def test_falling_register_is_flagged_not_dropped(buffer: Buffer) -> None:
    await run(buffer, energy("100.00", T0), energy("99.00", T0 + HOUR))
    rows, events = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.NON_MONOTONIC]
    assert events == []
    # Counted once, by the buffer, for what it committed.
    assert buffer._metrics.readings_flagged.labels("non_monotonic")._value.get() == 1


@pytest.mark.asyncio
async def test_counter_reset_is_an_event(buffer: Buffer) -> None:
    await run(buffer, energy("5000.00", T0), energy("0.10", T0 + HOUR))
    rows, events = await stored(buffer)
    assert qualities(rows)[1] == Quality.NON_MONOTONIC
    assert events == [EventKind.COUNTER_RESET.value]


@pytest.mark.asyncio
async def test_rollover_at_register_top(buffer: Buffer) -> None:
    await run(buffer, energy("999999.50", T0), energy("1.00", T0 + HOUR))
    rows, events = await stored(buffer)
    assert qualities(rows)[1] == Quality.ROLLOVER
    assert events == []


@pytest.mark.asyncio
async def test_spike_is_flagged(buffer: Buffer) -> None:
    cfg = ValidationConfig(max_power_kw=10)
    await run(buffer, energy("100", T0), energy("111", T0 + HOUR), config=cfg)
    await run(buffer, energy("100", T0, "m2"), energy("109", T0 + HOUR, "m2"), config=cfg)
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.SUSPECT_SPIKE, Quality.OK, Quality.OK]


@pytest.mark.asyncio
async def test_out_of_range_and_clock_drift(buffer: Buffer) -> None:
    volt = Reading("m1", "voltage_l1_v", Decimal("612.0"), "V", T0, TimeSource.POLL, T0, "bus")
    # A live concentrator reading stamped an hour before it arrived.
    late = Reading("c:1", "voltage_l1_v", Decimal("230"), "V", T0 - HOUR, CONC, T0, "topic")
    await run(buffer, volt, late)
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OUT_OF_RANGE, Quality.CLOCK_DRIFT]


@pytest.mark.asyncio
async def test_backfilled_past_reading_is_not_compared_with_newer(buffer: Buffer) -> None:
    # Read back after the gap: received an hour after the meter stamped it.
    old = Reading(
        "m1", "energy_import_total_kwh", Decimal("90.00"), "kWh", T0 - HOUR, TimeSource.METER,
        T0, "bus", Quality.BACKFILLED,
    )  # fmt: skip
    await run(buffer, energy("100.00", T0), old)
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.BACKFILLED]


def record(
    value: str, ts: int, received: int, source: TimeSource = TimeSource.METER, **kw: Any
) -> Reading:
    return Reading(
        "m1", "energy_import_total_kwh", Decimal(value), "kWh", ts, source, received, "bus", **kw
    )


@pytest.mark.asyncio
async def test_records_are_never_flagged_clock_drift(buffer: Buffer) -> None:
    """Backfilled, load-profile and concentrator-backfilled records are old by nature."""
    days = 24 * HOUR
    await run(
        buffer,
        record("10.00", T0 - 2 * days, T0, quality=Quality.BACKFILLED),
        record("11.00", T0 - days, T0, interval_s=900),  # a load-profile record
        record("12.00", T0 - HOUR, T0, CONC, quality=Quality.BACKFILLED),
        record("13.00", T0 - HOUR, T0, CONC, interval_s=900),
    )
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.BACKFILLED, Quality.OK, Quality.BACKFILLED, Quality.OK]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("late_ms", "flagged"), [(300_000, False), (300_001, True), (-300_000, False), (-300_001, True)]
)
async def test_clock_skew_just_inside_and_just_outside(
    buffer: Buffer, late_ms: int, flagged: bool
) -> None:
    volt = Reading("c:1", "voltage_l1_v", Decimal("230"), "V", T0, CONC, T0 + late_ms, "topic")
    row = ("c:2", "voltage_l1_v", "230", "V", T0, "concentrator", T0 + late_ms, "t", 0, None)
    v = checked(buffer)  # max_clock_skew = 300 s
    await v.accept([volt])
    await v.submit(WriteJob(rows=[row]))
    rows, _ = await stored(buffer)
    expected = Quality.CLOCK_DRIFT if flagged else Quality.OK
    assert qualities(rows) == [expected, expected]


@pytest.mark.asyncio
async def test_backfilled_concentrator_rows_are_not_clock_checked(buffer: Buffer) -> None:
    v = checked(buffer)
    back = int(Quality.BACKFILLED)
    rows = [
        ("c:1", "voltage_l1_v", "230", "V", T0 - HOUR, "concentrator", T0, "t", back, None),
        ("c:1", "voltage_l1_v", "231", "V", T0 - HOUR, "concentrator", T0, "t", 0, 900),
        ("c:1", "voltage_l1_v", "232", "V", T0 - HOUR, "meter", T0, "t", 0, None),
        ("c:1", "voltage_l1_v", "233", "V", T0 - HOUR, "poll", T0, "t", 0, None),
    ]
    await v.submit(WriteJob(rows=rows))
    got, _ = await stored(buffer)
    assert qualities(got) == [Quality.BACKFILLED, Quality.OK, Quality.OK, Quality.OK]


@pytest.mark.asyncio
async def test_concentrator_rows_are_validated_too(buffer: Buffer) -> None:
    v = checked(buffer)
    row = ("dlt645-2007:1", "energy_import_total_kwh", "500.00", "kWh", T0, "concentrator")
    first = (*row, T0, "meters/v1/c/readings", 0, None)
    later = (*row[:2], "400.00", "kWh", T0 + HOUR, "concentrator", T0 + HOUR, "t", 0, None)
    volts = ("dlt645-2007:1", "voltage_l1_v", "9999", "V", T0, "concentrator", T0, "t", 0, None)
    await v.submit(WriteJob(rows=[first, volts]))
    await v.submit(WriteJob(rows=[later]))
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.OUT_OF_RANGE, Quality.NON_MONOTONIC]


@pytest.mark.asyncio
async def test_failed_commit_keeps_the_reference(tmp_path: Path) -> None:
    buf = await Buffer.open(str(tmp_path / "b.sqlite"), BufferConfig(), Metrics())
    v = checked(buf)
    await v.accept([energy("100.00", T0)])
    await buf.close()  # a buffer that no longer commits
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the buffer says
        await v.accept([energy("50.00", T0 + HOUR)])
    buf = await Buffer.open(str(tmp_path / "b.sqlite"), BufferConfig(), Metrics())
    v._store = buf  # the same validator state, a working buffer again
    await buf.register_sink("check")
    await v.accept([energy("100.50", T0 + 2 * HOUR)])
    rows, _ = await stored(buf)
    assert [(r[3], Quality(r[9])) for r in rows] == [("100.00", Quality.OK), ("100.50", Quality.OK)]
    await buf.close()


async def reopen(path: Path, buf: Buffer) -> Buffer:
    await buf.close()
    new = await Buffer.open(str(path), BufferConfig(), Metrics())
    await new.register_sink("check")
    return new


@pytest.mark.asyncio
@pytest.mark.parametrize("restored", [True, False])
async def test_a_fall_across_a_restart_is_caught(tmp_path: Path, restored: bool) -> None:
    path = tmp_path / "b.sqlite"
    buf = await Buffer.open(str(path), BufferConfig(), Metrics())
    v = checked(buf)
    await v.accept([energy("100.00", T0), energy("7.00", T0, meter="m2")])
    assert await v.save() == 2
    buf = await reopen(path, buf)
    v = checked(buf)
    if restored:
        assert v.validator.restore(await buf.references()) == 2
    await v.accept([energy("90.00", T0 + HOUR)])
    rows, _ = await stored(buf)
    await buf.close()
    last = Quality(rows[-1][9])
    assert last == (Quality.NON_MONOTONIC if restored else Quality.OK)


@pytest.mark.asyncio
async def test_changed_references_ride_along_every_save_every(buffer: Buffer) -> None:
    lazy = checked(buffer, save_every=3600)
    await lazy.accept([energy("1.00", T0, meter="lazy")])
    await lazy.accept([energy("2.00", T0 + HOUR, meter="lazy")])
    assert await buffer.references() == []  # not yet due

    v = checked(buffer, save_every=0)
    await v.accept([energy("100.00", T0)])
    await v.accept([energy("101.00", T0 + HOUR)])  # carries the reference of the first
    assert await buffer.references() == [("m1", "energy_import_total_kwh", T0, "100.00")]
    await v.accept([energy("102.00", T0 + 2 * HOUR)])
    assert await buffer.references() == [("m1", "energy_import_total_kwh", T0 + HOUR, "101.00")]
    assert await v.save() == 1
    assert await v.save() == 0  # nothing changed since
    assert await buffer.references() == [("m1", "energy_import_total_kwh", T0 + 2 * HOUR, "102.00")]


@pytest.mark.asyncio
async def test_the_newest_reference_wins_and_bad_ones_are_skipped(buffer: Buffer) -> None:
    key = "energy_import_total_kwh"
    await buffer.submit(WriteJob(refs=[("m1", key, T0 + HOUR, "5.5")]))
    await buffer.submit(WriteJob(refs=[("m1", key, T0, "3.0")]))  # older: ignored
    await buffer.submit(WriteJob(refs=[("m2", key, T0, "not a number")]))
    await buffer.submit(WriteJob(refs=[("m3", "voltage_l1_v", T0, "230.1")]))
    refs = sorted(await buffer.references())
    assert refs[0] == ("m1", key, T0 + HOUR, "5.5")
    v = checked(buffer)
    assert v.validator.restore(refs) == 1  # m2 unreadable, m3 not a register
    await v.accept([energy("5.0", T0 + 2 * HOUR)])
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.NON_MONOTONIC]


_runs = iter(range(1_000_000))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30))
def test_any_plausible_rising_series_is_clean(tmp_path: Path, increments: list[int]) -> None:
    async def main() -> list[ReadingRow]:
        path = tmp_path / f"h{next(_runs)}.sqlite"
        buf = await Buffer.open(str(path), BufferConfig(), Metrics())
        await buf.register_sink("check")
        value = Decimal("1000.00")
        readings = []
        for i, inc in enumerate(increments):
            value += Decimal(inc) / 100  # at most 100 kWh per hour
            readings.append(energy(str(value), T0 + i * HOUR))
        await run(buf, *readings)
        rows, _ = await stored(buf)
        await buf.close()
        return rows

    rows = asyncio.run(main())
    assert len(rows) == len(increments)
    assert all(Quality(r[9]) == Quality.OK for r in rows)


# --------------------------------------------------------------- each check, exactly

TOTAL = "energy_import_total_kwh"


def reg(key: str, value: str, ts: int = T0, meter: str = "m1") -> Reading:
    return Reading(meter, key, Decimal(value), "kWh", ts, TimeSource.POLL, ts, "bus")


def tariffs(total: str, *values: str, ts: int = T0, meter: str = "m1") -> list[Reading]:
    """One poll of a total and its tariff registers, as the scheduler hands it on."""
    parts = [reg(f"energy_import_t{n}_kwh", v, ts, meter) for n, v in enumerate(values, 1)]
    return [reg(TOTAL, total, ts, meter), *parts]


async def one_job_each(buf: Buffer, *jobs: list[Reading], **kw: Any) -> None:
    v = checked(buf, **kw)
    for job in jobs:
        await v.accept(job)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("values", "mismatch"),
    [
        (("100.00", "10.00", "20.00", "30.00", "40.00"), False),
        (("100.01", "10.00", "20.00", "30.00", "40.00"), False),  # one step: rounding
        (("99.99", "10.00", "20.00", "30.00", "40.00"), False),
        (("100.02", "10.00", "20.00", "30.00", "40.00"), True),
        (("99.98", "10.00", "20.00", "30.00", "40.00"), True),
        (("100", "10.00", "20.00", "30.00", "40.40"), False),  # a whole-kWh total: 1 kWh
        (("100", "10.00", "20.00", "30.00", "41.01"), True),
        (("100.00", "60.00", "30.00"), False),  # tariffs 3 and 4 not read: may be below
        (("100.00", "60.00", "40.02"), True),  # ... but never above
    ],
)
async def test_tariff_sum(buffer: Buffer, values: tuple[str, ...], mismatch: bool) -> None:
    await one_job_each(buffer, tariffs(*values))
    rows, events = await stored(buffer)
    expected = Quality.TARIFF_MISMATCH if mismatch else Quality.OK
    assert qualities(rows) == [expected] * len(values)  # the total and every tariff
    assert events == []


@pytest.mark.asyncio
async def test_tariff_sum_compares_one_meter_at_one_instant(buffer: Buffer) -> None:
    job = [
        reg("energy_export_total_kwh", "3.00"),  # another family, no tariffs
        *tariffs("100.00", "10.00", "20.00", "30.00", "40.00"),
        reg("energy_import_t1_kwh", "99.00", T0 + HOUR),  # another instant, no total
        *tariffs("5.00", "1.00", "1.00", "1.00", "1.00", meter="m2"),  # off by one kWh
    ]
    await one_job_each(buffer, job)
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK] * 7 + [Quality.TARIFF_MISMATCH] * 5


@pytest.mark.asyncio
async def test_tariff_sum_in_concentrator_rows(buffer: Buffer) -> None:
    def row(key: str, value: str, meter: str) -> ReadingValues:
        return (meter, key, value, "kWh", T0, "concentrator", T0, "t", 0, None)

    good = [row(TOTAL, "50.5", "c:1")] + [
        row(f"energy_import_t{n}_kwh", v, "c:1") for n, v in enumerate(["20", "30.5", "0", "0"], 1)
    ]
    bad = [row(TOTAL, "50.5", "c:2"), row("energy_import_t1_kwh", "50.7", "c:2")]
    await checked(buffer).submit(WriteJob(rows=[*good, *bad]))
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK] * 5 + [Quality.TARIFF_MISMATCH] * 2


@pytest.mark.asyncio
async def test_tariff_sum_tolerance_is_a_threshold(buffer: Buffer) -> None:
    cfg = ValidationConfig(tariff_sum_tolerance=3)  # a meter that truncates each register
    await one_job_each(
        buffer,
        tariffs("100.03", "10.00", "20.00", "30.00", "40.00", meter="a"),
        tariffs("100.04", "10.00", "20.00", "30.00", "40.00", meter="b"),
        config=cfg,
    )
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK] * 5 + [Quality.TARIFF_MISMATCH] * 5


@pytest.mark.asyncio
async def test_two_concentrator_meters_in_one_batch_keep_separate_references(
    buffer: Buffer,
) -> None:
    def row(meter: str, value: str, ts: int) -> ReadingValues:
        return (meter, TOTAL, value, "kWh", ts, "concentrator", ts, "t", 0, None)

    v = checked(buffer)
    minute = 60_000
    # Interleaved, c:2 a minute behind: one shared reference would see 500 -> 20 -> 501 ...
    for n, (big, small) in enumerate(
        [("500.00", "20.00"), ("501.00", "21.00"), ("499.00", "22.00")]
    ):
        at = T0 + n * HOUR
        await v.submit(WriteJob(rows=[row("c:1", big, at), row("c:2", small, at + minute)]))
    rows, events = await stored(buffer)
    assert qualities(rows) == [Quality.OK] * 4 + [Quality.NON_MONOTONIC, Quality.OK]
    assert events == []


@pytest.mark.asyncio
async def test_a_reading_that_deserves_two_flags_gets_both(buffer: Buffer) -> None:
    v = checked(buffer, ValidationConfig(max_power_kw=10))
    row = ("c:1", TOTAL, "100.00", "kWh", T0, "concentrator", T0, "t", 0, None)
    # An hour later by its stamp, arriving two hours after that: a spike and a late clock.
    late = ("c:1", TOTAL, "150.00", "kWh", T0 + HOUR, "concentrator", T0 + 3 * HOUR, "t", 0, None)
    await v.submit(WriteJob(rows=[row]))
    await v.submit(WriteJob(rows=[late]))
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.SUSPECT_SPIKE | Quality.CLOCK_DRIFT]


@pytest.mark.asyncio
async def test_a_rollover_that_rises_too_fast_is_both(buffer: Buffer) -> None:
    cfg = ValidationConfig(max_power_kw=10)
    await run(buffer, energy("999999.50", T0), energy("20.00", T0 + HOUR), config=cfg)
    rows, events = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.ROLLOVER | Quality.SUSPECT_SPIKE]
    assert events == []


@pytest.mark.asyncio
async def test_a_spike_right_after_a_rollover(buffer: Buffer) -> None:
    cfg = ValidationConfig(max_power_kw=10)
    readings = [
        energy("999999.50", T0),
        energy("2.00", T0 + HOUR),  # wrapped, 2.5 kWh in an hour
        energy("30.00", T0 + 2 * HOUR),  # measured from 2.00, not from the top: 28 kWh
        energy("35.00", T0 + 3 * HOUR),
    ]
    await run(buffer, *readings, config=cfg)
    rows, events = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.ROLLOVER, Quality.SUSPECT_SPIKE, Quality.OK]
    assert events == []


@pytest.mark.asyncio
async def test_rollover_and_reset_thresholds_follow_the_register_top(buffer: Buffer) -> None:
    # Top 100000, margin 0.1: a wrap goes from >= 90000 to <= 10000, both inclusive.
    cfg = ValidationConfig(register_max_kwh=100000, rollover_margin=0.1, max_power_kw=1e6)
    cases = {
        "wrap": ("90000.00", "10000.00"),
        "not near the top": ("89999.99", "5.00"),  # a reset: fell to under a tenth
        "not near zero": ("95000.00", "10000.01"),  # a fall, not to under a tenth
    }
    for meter, (before, after) in cases.items():
        await run(buffer, energy(before, T0, meter), energy(after, T0 + HOUR, meter), config=cfg)
    rows, events = await stored(buffer)
    assert qualities(rows)[1::2] == [Quality.ROLLOVER, Quality.NON_MONOTONIC, Quality.NON_MONOTONIC]
    assert events == [EventKind.COUNTER_RESET.value]


@pytest.mark.asyncio
async def test_a_fall_that_is_no_reset_has_no_event(buffer: Buffer) -> None:
    await run(buffer, energy("100.00", T0), energy("10.00", T0 + HOUR))  # exactly a tenth
    await run(buffer, energy("100.00", T0, "m2"), energy("9.99", T0 + HOUR, "m2"))
    rows, events = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.NON_MONOTONIC] * 2
    assert events == [EventKind.COUNTER_RESET.value]


@pytest.mark.asyncio
async def test_range_bounds_are_inclusive(buffer: Buffer) -> None:
    def volts(v: str) -> Reading:
        return Reading("m1", "voltage_l1_v", Decimal(v), "V", T0, TimeSource.POLL, T0, "bus")

    await run(buffer, volts("0"), volts("500"), volts("500.1"), volts("-0.1"))
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.OK, Quality.OUT_OF_RANGE, Quality.OUT_OF_RANGE]


@pytest.mark.asyncio
async def test_a_spike_is_measured_against_the_time_between(buffer: Buffer) -> None:
    cfg = ValidationConfig(max_power_kw=10)
    # 10 kWh in one hour is the limit itself; 10.01 is past it.
    await run(buffer, energy("100", T0), energy("110", T0 + HOUR), config=cfg)
    await run(buffer, energy("100", T0, "m2"), energy("110.01", T0 + HOUR, "m2"), config=cfg)
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.OK, Quality.OK, Quality.SUSPECT_SPIKE]


# --------------------------------------------------------------- per meter and profile


@pytest.mark.asyncio
async def test_thresholds_per_meter_over_the_defaults(buffer: Buffer) -> None:
    defaults = ValidationConfig()
    small = defaults.merged(ValidationOverride(max_power_kw=10))
    v = checked(buffer, defaults, per_meter={"small": small})
    for meter in ("small", "big"):
        await v.accept([energy("100", T0, meter)])
        await v.accept([energy("150", T0 + HOUR, meter)])
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.SUSPECT_SPIKE, Quality.OK, Quality.OK]
    assert v.validator.limits("small").max_kwh_per_ms * HOUR == 10
    assert v.validator.limits("other") is v.validator.limits("big")
    assert v.validator.limits("other").max_kwh_per_ms * HOUR == defaults.max_power_kw
    v.validator.use_thresholds({"big": small})  # a reload: "big" is small now, "small" is not
    await v.accept([energy("200", T0 + 2 * HOUR, "small"), energy("200", T0 + 2 * HOUR, "big")])
    rows, _ = await stored(buffer)
    assert qualities(rows)[4:] == [Quality.OK, Quality.SUSPECT_SPIKE]


def test_merged_thresholds_meter_over_profile_over_defaults() -> None:
    defaults = ValidationConfig(max_power_kw=500, max_clock_skew=60)
    profile = ValidationOverride(
        max_power_kw=50,
        tariff_sum_tolerance=4,
        ranges={"voltage_l1_v": RangeConfig(min=0, max=300)},
    )
    meter = ValidationOverride(max_power_kw=20, ranges={"current_l1_a": RangeConfig(min=0, max=5)})
    got = defaults.merged(profile, meter)
    assert got.max_power_kw == 20
    assert got.tariff_sum_tolerance == 4
    assert got.max_clock_skew == 60
    assert got.ranges["voltage_l1_v"].max == 300
    assert got.ranges["current_l1_a"].max == 5
    assert got.ranges["frequency_hz"] == ValidationConfig().ranges["frequency_hz"]  # kept
    assert defaults.merged(None) == defaults


# --------------------------------------------------------------- what is kept, and when


@pytest.mark.asyncio
async def test_a_counter_reset_event_says_what_fell(buffer: Buffer) -> None:
    before = int(time.time() * 1000)
    await run(buffer, energy("5000.00", T0), energy("0.10", T0 + HOUR))
    after = int(time.time() * 1000)
    batch = await buffer.read("check", 0, 100)
    (_, kind, ts_ms, subject, reason, detail), *_ = batch.events
    assert (kind, subject) == ("counter_reset", "m1")
    assert reason == "energy_import_total_kwh fell from 5000.00 to 0.10"
    assert json.loads(detail) == {"key": TOTAL, "from": "5000.00", "to": "0.10"}
    assert before <= ts_ms <= after  # when it was found


@pytest.mark.asyncio
async def test_a_repeated_job_does_not_move_the_reference(buffer: Buffer) -> None:
    v = checked(buffer)
    await v.accept([energy("100.00", T0)])
    once = ("test", b"digest")
    first = await v.submit(WriteJob(rows=[energy("200.00", T0 + HOUR).values()], once=once))
    assert first.outcome is Outcome.ACCEPTED
    # The same message again, now with a lower value: stored never, compared never.
    again = await v.submit(WriteJob(rows=[energy("150.00", T0 + 2 * HOUR).values()], once=once))
    assert again.outcome is Outcome.DUPLICATE
    await v.accept([energy("201.00", T0 + 3 * HOUR)])
    rows, _ = await stored(buffer)
    assert [(r[3], Quality(r[9])) for r in rows] == [
        ("100.00", Quality.OK),
        ("200.00", Quality.OK),
        ("201.00", Quality.OK),
    ]
    assert v.healthy is buffer.healthy


@pytest.mark.asyncio
async def test_a_row_that_is_no_number_passes_unflagged(buffer: Buffer) -> None:
    bad = ("c:1", TOTAL, "NaN-ish", "kWh", T0, "concentrator", T0 - HOUR, "t", 0, None)
    late = ("c:1", "current_l1_a", "5", "A", T0, "concentrator", T0 - HOUR, "t", 0, None)
    found = check([bad, late], {}, Limits.of(ValidationConfig()))
    assert found.rows[0] is bad  # not even the clock: the ingest never stores such a row
    assert found.rows[1] == (*late[:8], int(Quality.CLOCK_DRIFT), None)  # the next one is
    assert found.events == []
    assert found.latest == {}


@pytest.mark.asyncio
async def test_restore_keeps_what_this_run_already_has(buffer: Buffer) -> None:
    v = checked(buffer)
    await v.accept([energy("100.00", T0)])
    refs = [("m1", TOTAL, T0 - HOUR, "50.00"), ("m2", TOTAL, T0 - HOUR, "7.00")]
    assert v.validator.restore(refs) == 1  # m1 is already known from this run
    await v.accept([energy("99.00", T0 + HOUR), energy("6.00", T0, "m2")])
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.NON_MONOTONIC, Quality.NON_MONOTONIC]


class Capture:
    """A job store that keeps what it is handed and commits at once (or fails)."""

    healthy = True

    def __init__(self) -> None:
        self.jobs: list[WriteJob] = []
        self.fail = False

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[WriteJob] = loop.create_future()
        # Settled on the next turn of the loop, as a committer does.
        if self.fail:
            loop.call_soon(fut.set_exception, OSError("disk gone"))
        else:
            self.jobs.append(job)
            loop.call_soon(fut.set_result, job)
        return fut


@pytest.mark.asyncio
async def test_what_needs_no_flag_is_passed_on_as_it_is() -> None:
    inner = Capture()
    v = checked(inner)
    polled = energy("100.00", T0).values()
    row = ("c:1", "current_l1_a", "5", "A", T0, "concentrator", T0, "t", 0, None)
    events = [Event(EventKind.METER_ONLINE, T0, "m1")]
    await v.submit(WriteJob(rows=[polled], events=events))
    await v.submit(WriteJob(rows=[row]))
    first, second = inner.jobs
    assert first.rows[0] is polled
    assert first.events is events  # no event found: the job's own list, not a copy
    assert second.rows[0] is row


@pytest.mark.asyncio
async def test_references_of_a_failed_commit_are_saved_later(buffer: Buffer) -> None:
    inner = Capture()
    v = checked(inner, save_every=0)
    errors: list[dict[str, Any]] = []  # nothing may raise in a commit's callbacks
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    await v.accept([energy("100.00", T0)])
    inner.fail = True
    with pytest.raises(OSError, match="disk gone"):
        await v.accept([energy("101.00", T0 + HOUR)])  # carried the reference: lost
    with pytest.raises(OSError, match="disk gone"):
        await v.save()
    inner.fail = False
    assert await v.save() == 1  # not forgotten
    assert list(inner.jobs[-1].refs) == [("m1", TOTAL, T0, "100.00")]
    assert errors == []


@pytest.mark.asyncio
async def test_after_a_save_the_next_one_waits_save_every(buffer: Buffer) -> None:
    v = checked(buffer, save_every=3600)
    await v.accept([energy("1.00", T0)])
    assert await v.save() == 1
    await v.accept([energy("2.00", T0 + HOUR)])
    await v.accept([energy("3.00", T0 + 2 * HOUR)])
    assert await buffer.references() == [("m1", TOTAL, T0, "1.00")]  # not due for an hour


@pytest.mark.asyncio
async def test_accept_stores_the_events_too(buffer: Buffer) -> None:
    event = Event(EventKind.METER_ONLINE, T0, "m1", "first answer")
    await checked(buffer).accept([energy("1.00", T0)], [event])
    _, events = await stored(buffer)
    assert events == [EventKind.METER_ONLINE.value]


@pytest.mark.asyncio
async def test_readings_of_one_job_are_compared_with_each_other(buffer: Buffer) -> None:
    await checked(buffer).accept([energy("100.00", T0), energy("99.00", T0 + HOUR)])
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.NON_MONOTONIC]


@pytest.mark.asyncio
async def test_a_polled_reading_that_deserves_two_flags_gets_both(buffer: Buffer) -> None:
    cfg = ValidationConfig(
        max_power_kw=10, ranges={TOTAL: RangeConfig(min=0, max=1000), **ValidationConfig().ranges}
    )
    late = record("150.00", T0 + HOUR, T0 + 3 * HOUR, CONC)  # a spike, and late
    cases = [
        energy("100.00", T0),
        late,
        energy("2000.00", T0 + 2 * HOUR),  # a spike and out of range
        energy("1500.00", T0 + 3 * HOUR),  # a fall and out of range
        energy("5.00", T0 + 4 * HOUR),  # wrapped? no: top is far; a reset
    ]
    await run(buffer, *cases, config=cfg)
    rows, events = await stored(buffer)
    assert qualities(rows) == [
        Quality.OK,
        Quality.SUSPECT_SPIKE | Quality.CLOCK_DRIFT,
        Quality.SUSPECT_SPIKE | Quality.OUT_OF_RANGE,
        Quality.NON_MONOTONIC | Quality.OUT_OF_RANGE,
        Quality.NON_MONOTONIC,
    ]
    assert events == [EventKind.COUNTER_RESET.value]


@pytest.mark.asyncio
async def test_a_rollover_out_of_range_is_both(buffer: Buffer) -> None:
    cfg = ValidationConfig(ranges={TOTAL: RangeConfig(min=10, max=1_000_000)})
    await run(buffer, energy("999999.50", T0), energy("1.00", T0 + HOUR), config=cfg)
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.ROLLOVER | Quality.OUT_OF_RANGE]


@pytest.mark.asyncio
async def test_counter_resets_in_concentrator_rows_are_events(buffer: Buffer) -> None:
    def row(value: str, ts: int) -> ReadingValues:
        return ("c:1", TOTAL, value, "kWh", ts, "concentrator", ts, "t", 0, None)

    v = checked(buffer)
    await v.submit(WriteJob(rows=[row("5000.00", T0)]))
    await v.submit(WriteJob(rows=[row("1.00", T0 + HOUR)]))
    rows, events = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.NON_MONOTONIC]
    assert events == [EventKind.COUNTER_RESET.value]


@pytest.mark.asyncio
async def test_thresholds_per_meter_in_concentrator_rows(buffer: Buffer) -> None:
    def row(meter: str, key: str, value: str, ts: int, received: int) -> ReadingValues:
        return (meter, key, value, "kWh", ts, "concentrator", received, "t", 0, None)

    small = ValidationConfig().merged(
        ValidationOverride(max_power_kw=10, max_clock_skew=60, tariff_sum_tolerance=5)
    )
    v = checked(buffer, per_meter={"c:small": small})
    jobs = [
        [row(m, TOTAL, "100", T0, T0) for m in ("c:small", "c:big")],
        [row(m, TOTAL, "150", T0 + HOUR, T0 + HOUR + 120_000) for m in ("c:small", "c:big")],
        [
            row(m, k, v_, T0 + 2 * HOUR, T0 + 2 * HOUR)
            for m in ("c:big", "c:small")  # a lone total first
            for k, v_ in ((TOTAL, "150.00"), ("energy_import_t1_kwh", "150.05"))
        ],
    ]
    for job in jobs:
        await v.submit(WriteJob(rows=job))
    rows, _ = await stored(buffer)
    got = {(r[1], r[2], r[5]): Quality(r[9]) for r in rows}
    hour = T0 + HOUR
    assert got["c:small", TOTAL, hour] == Quality.SUSPECT_SPIKE | Quality.CLOCK_DRIFT
    assert got["c:big", TOTAL, hour] == Quality.OK
    later = T0 + 2 * HOUR
    assert got["c:big", TOTAL, later] == Quality.TARIFF_MISMATCH  # 0.05 over, 1 step allowed
    assert got["c:small", TOTAL, later] == Quality.OK  # 5 steps allowed


@pytest.mark.asyncio
async def test_an_unreadable_reference_is_logged_and_the_next_still_restored(
    buffer: Buffer,
) -> None:
    v = checked(buffer)
    refs = [("m1", TOTAL, T0, "not a number"), ("m2", TOTAL, T0, "7.00")]
    with structlog.testing.capture_logs() as logs:
        assert v.validator.restore(refs) == 1
    assert [e for e in logs if e["event"] == "reference_unreadable"] == [
        {
            "event": "reference_unreadable",
            "log_level": "warning",
            "meter": "m1",
            "key": TOTAL,
            "value": "not a number",
        }
    ]
    assert v.validator._last["m2", TOTAL] == (T0, Decimal("7.00"))


def _energy_row(value: str, ts: int, meter: str = "m1") -> ReadingValues:
    return (meter, "energy_import_total_kwh", value, "kWh", ts, "poll", ts, "", 0, None)


def test_the_pure_check_stamps_its_events_with_the_time_it_is_given() -> None:
    last = {("m1", "energy_import_total_kwh"): (T0, Decimal("5000.00"))}
    found = check([_energy_row("0.10", T0 + HOUR)], last, Limits.of(ValidationConfig()), None, 42)
    assert [(e.kind, e.ts_ms) for e in found.events] == [(EventKind.COUNTER_RESET, 42)]


def test_a_job_without_rows_carries_the_references_due_for_saving() -> None:
    v = Validator(save_every=0)
    job, latest, _ = v.check(WriteJob(rows=[_energy_row("100.00", T0)]))
    v.committed(job, latest)
    event = Event(EventKind.GAP_OPENED, T0, "m1")
    events_only, _, refs = v.check(WriteJob(events=(event,)))
    assert [r[:3] for r in events_only.refs] == [("m1", "energy_import_total_kwh", T0)]
    assert list(events_only.refs) == refs
    assert v.check(WriteJob(events=(event,)))[0].refs == ()  # saved once, not again


@pytest.mark.parametrize("outcome", [Outcome.DUPLICATE, Outcome.REJECTED])
def test_a_job_that_was_not_stored_does_not_move_the_references(outcome: Outcome) -> None:
    v = Validator(save_every=3600)
    job, latest, _ = v.check(WriteJob(rows=[_energy_row("100.00", T0)]))
    v.committed(dataclasses.replace(job, outcome=outcome), latest)
    assert v.take_refs() == []
    job, latest, _ = v.check(WriteJob(rows=[_energy_row("50.00", T0 + HOUR)]))
    assert Quality(job.rows[0][8]) == Quality.OK  # nothing to compare with
