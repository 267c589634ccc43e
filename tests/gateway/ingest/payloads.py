"""Concentrator payloads for tests: valid ``metergw.readings/1`` batches as bytes."""

from __future__ import annotations

from typing import Any

import orjson

KEYS = ("energy_import_total_kwh", "voltage_l1_v", "current_l1_a", "frequency_hz")


def batch(
    gw: str = "c1", seq: int = 1, meters: int = 2, points: int = 2, base: int = 0
) -> dict[str, Any]:
    """A batch: ``meters`` meters with ``points`` points each; values derive from ``base``."""
    return {
        "schema": "metergw.readings/1",
        "gw": gw,
        "seq": seq,
        "ts": "2026-11-23T10:00:00Z",
        "readings": [
            {
                "meter": {"addr": f"{base + m:012d}", "proto": "dlt645-2007", "port": "rs485-1"},
                "ts": f"2026-11-23T10:{(base + m) // 60 % 60:02d}:{(base + m) % 60:02d}.250+08:00",
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
