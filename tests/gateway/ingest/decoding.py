"""Helpers for the decoder's tests: payloads one field away from a plain valid one, and
decoding that says which path ran (the lean checker alone, or the schema model).

The ``paths`` fixture (conftest.py) wraps ``parse_readings`` to count its calls.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.ingest import decode
from gateway.ingest.decode import Decoded, decode_message
from protocols.concentrator import PayloadError, parse_readings
from tests.gateway.ingest.payloads import BATCH_TS

TOPIC = "meters/v1/c1/readings"
V = ("readings", 0, "points", 0, "v")


class Paths:
    """How often the schema model was asked (the helpers below set ``model`` to 0 first)."""

    def __init__(self) -> None:
        self.model = 0


def encode(obj: Any) -> bytes:
    # The stdlib's encoder: it writes integers beyond 64 bits too (orjson refuses them).
    return json.dumps(obj, separators=(",", ":")).encode()


def point(**fields: Any) -> dict[str, Any]:
    return {"key": "voltage_l1_v", "v": 230.5, **fields}


def body(*points: dict[str, Any], **top: Any) -> dict[str, Any]:
    """One meter's readings (``points``, or one voltage), top-level keys overridden by ``top``."""
    return {
        "schema": "metergw.readings/1",
        "gw": "c1",
        "seq": 1,
        "ts": BATCH_TS,
        "readings": [
            {
                "meter": {"addr": "000000000001", "proto": "dlt645-2007"},
                "ts": BATCH_TS,
                "points": list(points) or [point()],
            }
        ],
        **top,
    }


def put(obj: dict[str, Any], where: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    node: Any = obj
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = value
    return obj


def topic_of(obj: dict[str, Any]) -> str:
    return f"meters/v1/{obj.get('gw', 'c1')}/readings"


def lean(paths: Paths, obj: dict[str, Any], **kw: Any) -> Decoded:
    """Decode ``obj``, which the lean checker must accept on its own."""
    paths.model = 0
    d = decode_message(topic_of(obj), encode(obj), 7, **kw)
    assert paths.model == 0, "the lean checker did not vouch for a plainly valid payload"
    return d


def via_model(paths: Paths, obj: dict[str, Any]) -> Decoded:
    """Decode ``obj``, a lax shape the schema model accepts (the lean checker must not)."""
    paths.model = 0
    d = decode_message(topic_of(obj), encode(obj), 7)
    assert paths.model == 1, "a lax shape did not reach the schema model"
    return d


def refused(paths: Paths, obj: dict[str, Any], match: str) -> str:
    """The reason ``obj`` is refused: the lean checker passed it on and the model said why."""
    paths.model = 0
    with pytest.raises(PayloadError, match=match) as info:
        decode_message(topic_of(obj), encode(obj), 7)
    assert paths.model == 1
    return info.value.reason


def by_model(obj: dict[str, Any]) -> Decoded:
    """What the schema model's path makes of ``obj`` (to compare with the lean path's)."""
    return decode._from_model(parse_readings(encode(obj)), TOPIC, 7)


def values(d: Decoded) -> list[str]:
    return [row[2] for row in d.rows]
