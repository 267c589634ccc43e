"""Reading a meter's day back from the local store (``[sinks.local]``, ``local.sqlite``).

The I/O half of :mod:`gateway.analytics`: the computation itself is pure
(:func:`gateway.analytics.daily.compute_daily`).
"""

from __future__ import annotations

import sqlite3
from datetime import date, tzinfo
from decimal import Decimal

from gateway.analytics.daily import (
    BRIDGE_MS,
    TARIFF_KEYS,
    TOTAL_KEY,
    DailyFigures,
    Point,
    compute_daily,
    day_bounds,
)
from gateway.model import Quality

_KEYS = (TOTAL_KEY, *TARIFF_KEYS)


def stored_meter_ids(conn: sqlite3.Connection, meter: str) -> list[str]:
    """The stored meter ids ``meter`` names: itself, or ``proto:ADDRESS`` ids by address."""
    rows = conn.execute(
        "SELECT DISTINCT meter FROM local_readings WHERE meter = ? OR meter LIKE ?",
        (meter, f"%:{meter}"),
    )
    return sorted(r[0] for r in rows)


def load_points(conn: sqlite3.Connection, meter: str, start_ms: int, end_ms: int) -> list[Point]:
    """Import registers of ``meter`` from ``start_ms`` to ``end_ms``, an interval either side
    (for interpolation across the midnights)."""
    marks = ",".join("?" * len(_KEYS))
    rows = conn.execute(
        f"SELECT key, ts_ms, value, quality FROM local_readings "
        f"WHERE meter = ? AND key IN ({marks}) AND ts_ms BETWEEN ? AND ?",
        (meter, *_KEYS, start_ms - BRIDGE_MS, end_ms + BRIDGE_MS),
    )
    return [Point(key, ts, Decimal(value), Quality(q)) for key, ts, value, q in rows]


def daily_from_store(conn: sqlite3.Connection, meter: str, day: date, zone: tzinfo) -> DailyFigures:
    """The figures of ``meter`` (a stored meter id) for local ``day`` from the store."""
    start_ms, end_ms = day_bounds(day, zone)
    return compute_daily(meter, day, zone, load_points(conn, meter, start_ms, end_ms))
