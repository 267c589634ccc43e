"""Readings and events for buffer tests."""

from __future__ import annotations

from decimal import Decimal

from gateway.model import Event, EventKind, Quality, Reading, TimeSource

T0 = 1_790_000_000_000


def reading(n: int, meter: str = "dlt645-2007:000000000001", value: str | None = None) -> Reading:
    """The ``n``-th reading of a meter: distinct timestamp, exact decimal value."""
    return Reading(
        meter=meter,
        key="energy_import_total_kwh",
        value=Decimal(value if value is not None else f"{n}.01"),
        unit="kWh",
        ts_ms=T0 + n * 1000,
        ts_source=TimeSource.POLL,
        received_ms=T0 + n * 1000 + 5,
        source="rs485-1",
        quality=Quality.ESTIMATED if n % 7 == 0 else Quality.OK,
    )


def event(n: int) -> Event:
    return Event(EventKind.METER_OFFLINE, T0 + n, "meter-1", "no answer", {"misses": 3})
