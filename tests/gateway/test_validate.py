"""Validation flags what looks wrong and never drops a reading.

The validator stands in front of a real buffer; what it flagged is read back
from the buffer as a sink would read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.buffer import Buffer, ReadingRow, WriteJob
from gateway.config.northbound import BufferConfig
from gateway.config.validation import ValidationConfig
from gateway.metrics import Metrics
from gateway.model import EventKind, Quality, Reading, TimeSource
from gateway.validate import Validator

HOUR = 3_600_000
T0 = 1_800_000_000_000


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


async def run(buf: Buffer, *readings: Reading, config: ValidationConfig | None = None) -> None:
    v = Validator(buf, config)
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
    late = Reading("m1", "voltage_l1_v", Decimal("230"), "V", T0 - HOUR, TimeSource.METER, T0, "b")
    await run(buffer, volt, late)
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OUT_OF_RANGE, Quality.CLOCK_DRIFT]


@pytest.mark.asyncio
async def test_backfilled_past_reading_is_not_compared_with_newer(buffer: Buffer) -> None:
    old = Reading(
        "m1", "energy_import_total_kwh", Decimal("90.00"), "kWh", T0 - HOUR, TimeSource.METER,
        T0 - HOUR, "bus", Quality.BACKFILLED,
    )  # fmt: skip
    await run(buffer, energy("100.00", T0), old)
    rows, _ = await stored(buffer)
    assert qualities(rows) == [Quality.OK, Quality.BACKFILLED]


@pytest.mark.asyncio
async def test_concentrator_rows_are_validated_too(buffer: Buffer) -> None:
    v = Validator(buffer)
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
    v = Validator(buf)
    await v.accept([energy("100.00", T0)])
    await buf.close()  # a buffer that no longer commits
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the buffer says
        await v.accept([energy("50.00", T0 + HOUR)])
    buf = await Buffer.open(str(tmp_path / "b.sqlite"), BufferConfig(), Metrics())
    v._inner = buf  # the same validator state, a working buffer again
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
    v = Validator(buf)
    await v.accept([energy("100.00", T0), energy("7.00", T0, meter="m2")])
    assert await v.save() == 2
    buf = await reopen(path, buf)
    v = Validator(buf)
    if restored:
        assert v.restore(await buf.references()) == 2
    await v.accept([energy("90.00", T0 + HOUR)])
    rows, _ = await stored(buf)
    await buf.close()
    last = Quality(rows[-1][9])
    assert last == (Quality.NON_MONOTONIC if restored else Quality.OK)


@pytest.mark.asyncio
async def test_changed_references_ride_along_every_save_every(buffer: Buffer) -> None:
    lazy = Validator(buffer, save_every=3600)
    await lazy.accept([energy("1.00", T0, meter="lazy")])
    await lazy.accept([energy("2.00", T0 + HOUR, meter="lazy")])
    assert await buffer.references() == []  # not yet due

    v = Validator(buffer, save_every=0)
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
    v = Validator(buffer)
    assert v.restore(refs) == 1  # m2 unreadable, m3 not a register
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
