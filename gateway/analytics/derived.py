"""A day's figures as readings of their own quantity keys, stored and forwarded like any."""

from __future__ import annotations

from decimal import Decimal

from gateway.analytics.daily import DailyFigures
from gateway.model import Reading, TimeSource
from protocols.quantities import QUANTITIES, TARIFF_NAMES

SOURCE = "analytics"
"""The ``source`` of derived readings."""

_ENERGY_KEYS = {
    "total": "daily_energy_import_total_kwh",
    **{name: f"daily_energy_import_t{n}_kwh" for n, name in enumerate(TARIFF_NAMES, start=1)},
}
DERIVED_KEYS = (
    *_ENERGY_KEYS.values(),
    "daily_max_demand_kw",
    "daily_load_factor",
    "daily_valley_share",
    "daily_completeness",
)
"""Every key a day's figures are stored under."""


def derived_readings(figures: DailyFigures, received_ms: int) -> list[Reading]:
    """The figures as readings stamped at the day's start (local midnight), each with the
    day's quality (``estimated`` where it had a gap); figures that are unknown are left out.
    """
    values: dict[str, Decimal | None] = {
        key: figures.energy_kwh.get(name) for name, key in _ENERGY_KEYS.items()
    }
    values["daily_max_demand_kw"] = figures.max_demand_kw
    values["daily_load_factor"] = figures.load_factor
    values["daily_valley_share"] = figures.valley_share
    values["daily_completeness"] = figures.completeness
    day_s = (figures.end_ms - figures.start_ms) // 1000
    return [
        Reading(
            figures.meter,
            key,
            value,
            QUANTITIES[key].unit,
            figures.start_ms,
            TimeSource.METER,
            received_ms,
            SOURCE,
            figures.quality,
            day_s,
        )
        for key, value in values.items()
        if value is not None
    ]
