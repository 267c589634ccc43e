"""Validation flags what looks wrong and never drops a reading."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.validation import ValidationConfig
from gateway.metrics import Metrics
from gateway.model import Event, EventKind, Quality, Reading, TimeSource
from gateway.validate import Validator

HOUR = 3_600_000
T0 = 1_800_000_000_000


class Store:
    """An in-memory acceptor: what the buffer would have committed."""

    def __init__(self, fail: bool = False) -> None:
        self.readings: list[Reading] = []
        self.events: list[Event] = []
        self.fail = fail

    async def accept(self, readings: Sequence[Reading], events: Sequence[Event] = ()) -> None:
        if self.fail:
            raise OSError(28, "No space left on device")
        self.readings.extend(readings)
        self.events.extend(events)


def energy(value: str, ts: int, meter: str = "m1", source: TimeSource = TimeSource.POLL) -> Reading:
    return Reading(meter, "energy_import_total_kwh", Decimal(value), "kWh", ts, source, ts, "bus")


async def run(*readings: Reading, config: ValidationConfig | None = None) -> Store:
    store = Store()
    v = Validator(store, Metrics(), config)
    for r in readings:
        await v.accept([r])
    return store


@pytest.mark.asyncio
async def test_rising_register_is_ok() -> None:
    store = await run(energy("100.00", T0), energy("101.50", T0 + HOUR))
    assert [r.quality for r in store.readings] == [Quality.OK, Quality.OK]


@pytest.mark.asyncio
async def test_falling_register_is_non_monotonic_not_dropped() -> None:
    store = await run(energy("100.00", T0), energy("99.00", T0 + HOUR))
    assert len(store.readings) == 2
    assert store.readings[1].quality == Quality.NON_MONOTONIC
    assert store.events == []


@pytest.mark.asyncio
async def test_counter_reset_is_an_event() -> None:
    store = await run(energy("5000.00", T0), energy("0.10", T0 + HOUR))
    assert store.readings[1].quality == Quality.NON_MONOTONIC
    assert [(e.kind, e.subject) for e in store.events] == [(EventKind.COUNTER_RESET, "m1")]
    assert "5000.00" in store.events[0].reason


@pytest.mark.asyncio
async def test_rollover_at_register_top() -> None:
    store = await run(energy("999999.50", T0), energy("1.00", T0 + HOUR))
    assert store.readings[1].quality == Quality.ROLLOVER
    assert store.events == []


@pytest.mark.asyncio
async def test_spike_is_flagged() -> None:
    cfg = ValidationConfig(max_power_kw=10)
    store = await run(energy("100", T0), energy("111", T0 + HOUR), config=cfg)
    assert store.readings[1].quality == Quality.SUSPECT_SPIKE
    store = await run(energy("100", T0), energy("109", T0 + HOUR), config=cfg)
    assert store.readings[1].quality == Quality.OK


@pytest.mark.asyncio
async def test_out_of_range_and_clock_drift() -> None:
    volt = Reading("m1", "voltage_l1_v", Decimal("612.0"), "V", T0, TimeSource.POLL, T0, "bus")
    late = Reading(
        "m1", "voltage_l1_v", Decimal("230"), "V", T0 - 3600_000, TimeSource.METER, T0, "bus"
    )
    store = await run(volt, late)
    assert store.readings[0].quality == Quality.OUT_OF_RANGE
    assert store.readings[1].quality == Quality.CLOCK_DRIFT


@pytest.mark.asyncio
async def test_backfilled_past_reading_is_not_compared_with_newer() -> None:
    old = energy("90.00", T0 - HOUR, source=TimeSource.METER)
    old = Reading(**{**{f: getattr(old, f) for f in old.__slots__}, "received_ms": T0 - HOUR})
    store = await run(energy("100.00", T0), old)
    assert [r.quality for r in store.readings] == [Quality.OK, Quality.OK]


@pytest.mark.asyncio
async def test_failed_commit_keeps_the_reference() -> None:
    store = Store()
    v = Validator(store, Metrics())
    await v.accept([energy("100.00", T0)])
    store.fail = True
    with pytest.raises(OSError, match="No space"):
        await v.accept([energy("50.00", T0 + HOUR)])
    store.fail = False
    await v.accept([energy("100.50", T0 + 2 * HOUR)])
    assert store.readings[-1].quality == Quality.OK


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30))
def test_any_plausible_rising_series_is_clean(increments: list[int]) -> None:
    import asyncio

    value = Decimal("1000.00")
    readings = []
    for i, inc in enumerate(increments):
        value += Decimal(inc) / 100  # at most 100 kWh per hour
        readings.append(energy(str(value), T0 + i * HOUR))
    store = asyncio.run(run(*readings))
    assert len(store.readings) == len(readings)
    assert all(r.quality == Quality.OK for r in store.readings)
