"""Payload decoding: the lean path agrees with the schema; bad payloads get clear reasons."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.decode import decode_message
from gateway.model import Quality, TimeSource
from protocols.concentrator import PayloadError, parse_readings
from tests.gateway.ingest.payloads import HOUR, batch, encode

TOPIC = "meters/v1/c1/readings"


def test_valid_batch_becomes_readings() -> None:
    body = batch(meters=2, points=3)
    body["readings"][1]["points"][0]["q"] = 4
    body["readings"][0]["points"][0]["v"] = 123456.78
    d = decode_message(TOPIC, encode(body), 42)
    assert (d.mark.gw, d.mark.seq, d.mark.topic) == ("c1", 1, TOPIC)
    hour_ms = int(HOUR.timestamp() * 1000)
    assert d.mark.ts_ms == hour_ms
    readings = d.readings()
    assert len(readings) == 6
    r = readings[0]
    assert r.meter == "dlt645-2007:000000000000"
    assert r.value == Decimal("123456.78")
    assert str(r.value) == "123456.78"
    assert r.ts_source is TimeSource.CONCENTRATOR
    assert r.source == TOPIC
    assert r.received_ms == 42
    assert r.ts_ms == hour_ms - 8 * 3600_000 + 250
    assert readings[3].quality is Quality.DEVICE_FLAGGED
    assert readings[0].quality is Quality.OK


def _mutations() -> st.SearchStrategy[tuple[list[Any], Any]]:
    paths = st.sampled_from(
        [
            ["gw"],
            ["seq"],
            ["ts"],
            ["schema"],
            ["readings", 0, "ts"],
            ["readings", 0, "meter", "addr"],
            ["readings", 0, "meter", "proto"],
            ["readings", 0, "meter", "port"],
            ["readings", 0, "points", 0, "v"],
            ["readings", 0, "points", 0, "q"],
            ["readings", 0, "points", 0, "u"],
            ["readings", 0, "points", 0, "key"],
            ["readings", 0, "points", 0, "id"],
            ["readings", 0, "points", 0, "extra"],
            ["readings", 0, "points"],
            ["readings"],
            ["extra"],
        ]
    )
    values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
        st.sampled_from(
            [
                "2026-11-23T10:00:00",
                "2026-11-23T10:00:00+08:00",
                "20261123T100000Z",
                "c/1",
                "dlt645-1997",
                "voltage_l1_v",
                "0" * 33,
                "1.5",
                "",
                "1e400",
            ]
        ),
        st.lists(st.integers(), max_size=2),
        st.just({}),
    )
    return st.tuples(paths, values)


@settings(max_examples=300, deadline=None)
@given(mutation=_mutations())
def test_lean_path_accepts_only_what_the_schema_accepts(mutation: tuple[list[Any], Any]) -> None:
    path, value = mutation
    body = copy.deepcopy(batch(meters=1, points=1))
    node = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    raw = json.dumps(body).encode()  # stdlib: integers beyond 64 bits too
    try:
        model = parse_readings(raw)
    except PayloadError:
        with pytest.raises(PayloadError):
            decode_message(TOPIC.replace("c1", str(body.get("gw"))), raw, 0)
        return
    d = decode_message(f"meters/v1/{model.gw}/readings", raw, 0)
    expected = [(p.key, p.v, p.u) for m in model.readings for p in m.points]
    assert [(r.key, r.value, r.unit) for r in d.readings()] == expected
    assert all("E" not in row[2] and "e" not in row[2] for row in d.rows)
    assert d.mark.seq == model.seq


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "Invalid JSON"),
        (b"[1, 2]", "Input should be an object"),
        (encode({**batch(), "schema": "metergw.readings/2"}), "schema"),
        (
            b'{"schema":"metergw.readings/1","gw":"c1","seq":1,"ts":"2026-11-23T10:00:00Z",'
            b'"readings":[{"meter":{"addr":"1","proto":"dlt645-2007"},"ts":"2026-11-23T10:00:00Z",'
            b'"points":[{"key":"voltage_l1_v","v":NaN}]}]}',
            "finite number",
        ),
        (encode({**batch(), "seq": "one"}), "seq"),
        (encode({**batch(), "seq": -1}), "seq"),
        (encode({**batch(), "gw": "c2"}), "does not match the topic"),
        (encode({**batch(), "ts": "2026-11-23T10:00:00"}), "ts"),
    ],
)
def test_bad_payloads_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        decode_message(TOPIC, payload, 0)


def test_huge_payload_is_refused_before_parsing() -> None:
    raw = encode(batch(meters=200, points=8))
    with pytest.raises(PayloadError, match="exceeds max_payload_bytes 1000"):
        decode_message(TOPIC, raw, 0, max_bytes=1000)


def test_topic_must_name_the_concentrator() -> None:
    with pytest.raises(PayloadError, match="is not meters/v1"):
        decode_message("other/topic", encode(batch()), 0)


def test_unknown_key_is_refused() -> None:
    body = batch()
    body["readings"][0]["points"][0]["key"] = "energy_bogus"
    with pytest.raises(PayloadError, match="unknown quantity key"):
        decode_message(TOPIC, orjson.dumps(body), 0)
