"""Daily analytics at the edge: consumption per tariff period, maximum demand, load factor,
valley share and completeness of each meter's local day, from the readings the box holds.

:func:`compute_daily` is pure; :func:`daily_from_store` reads the local store;
:func:`derived_readings` turns a day into readings; :class:`DailyCloser` stores
them at each day's close.
"""

from gateway.analytics.closer import DailyCloser, daily_closer
from gateway.analytics.daily import (
    ENERGY_FIGURES,
    INTERVAL_S,
    DailyFigures,
    Point,
    compute_daily,
    day_bounds,
)
from gateway.analytics.derived import DERIVED_KEYS, derived_readings
from gateway.analytics.stored import daily_from_store, load_points, stored_meter_ids

__all__ = [
    "DERIVED_KEYS",
    "ENERGY_FIGURES",
    "INTERVAL_S",
    "DailyCloser",
    "DailyFigures",
    "Point",
    "compute_daily",
    "daily_closer",
    "daily_from_store",
    "day_bounds",
    "derived_readings",
    "load_points",
    "stored_meter_ids",
]
