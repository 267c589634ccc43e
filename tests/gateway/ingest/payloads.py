"""Concentrator payloads for tests: valid ``metergw.readings/1`` batches as bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

KEYS = ("energy_import_total_kwh", "voltage_l1_v", "current_l1_a", "frequency_hz")

HOUR = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
"""The hour every test batch is stamped in: a whole hour a day before the run, so that
no test depends on the date it runs (a fixed date ages past a sink's retention)."""
BATCH_TS = HOUR.strftime("%Y-%m-%dT%H:00:00Z")
"""A batch's ``ts``."""


def reading_ts(n: int) -> str:
    """The ``ts`` of meter ``n``'s readings: ``n`` seconds into the hour's wall-clock digits,
    written with a +08:00 offset (so 8 hours before :data:`BATCH_TS`), plus 250 ms."""
    return f"{HOUR:%Y-%m-%dT%H}:{n // 60 % 60:02d}:{n % 60:02d}.250+08:00"


def batch(
    gw: str = "c1", seq: int = 1, meters: int = 2, points: int = 2, base: int = 0
) -> dict[str, Any]:
    """A batch: ``meters`` meters with ``points`` points each; values derive from ``base``."""
    return {
        "schema": "metergw.readings/1",
        "gw": gw,
        "seq": seq,
        "ts": BATCH_TS,
        "readings": [
            {
                "meter": {"addr": f"{base + m:012d}", "proto": "dlt645-2007", "port": "rs485-1"},
                "ts": reading_ts(base + m),
                "points": [
                    {
                        "id": "00010000",
                        "key": KEYS[p % len(KEYS)],
                        "v": 1000 + m + p / 100,
                        "u": "kWh",
                    }
                    for p in range(points)
                ],
            }
            for m in range(meters)
        ],
    }


def encode(obj: Any) -> bytes:
    return orjson.dumps(obj)
