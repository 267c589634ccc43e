"""Decoded values and times: plain decimal text, kept per point and per meter.

A value is stored as the exact decimal text of the number the concentrator sent: never
in exponent notation, integral values as integers, the same text whichever decode path
ran, within the schema's bounds on magnitude, digits and text length.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.ingest import decode
from gateway.ingest.decode import Decoded, decode_message, reason_kind
from gateway.model import Quality, TimeSource
from tests.gateway.ingest.decoding import (
    TOPIC,
    Paths,
    V,
    body,
    by_model,
    encode,
    lean,
    point,
    put,
    refused,
    values,
    via_model,
)
from tests.gateway.ingest.payloads import BATCH_TS


@pytest.mark.parametrize(
    ("v", "text"),
    [
        (1e-07, "0.0000001"),
        (-1e-07, "-0.0000001"),
        (1.5e-12, "0.0000000000015"),
        (1e-12, "0.000000000001"),
        (123456.78, "123456.78"),
        (0.1, "0.1"),
        (100.0, "100"),
        (-100.0, "-100"),
        (1e14, "100000000000000"),
        (999999999999999.0, "999999999999999"),
        (0.0, "0"),
        (-0.0, "0"),
        (0, "0"),
        (42, "42"),
        (-42, "-42"),
        (1.2345678901234567, "1.2345678901234567"),
    ],
)
def test_values_are_plain_decimal_text(paths: Paths, v: float, text: str) -> None:
    d = lean(paths, put(body(), V, v))
    assert values(d) == [text]
    assert by_model(put(body(), V, v)).rows == d.rows


@pytest.mark.parametrize(
    ("v", "text"),
    [
        ("1e-7", "0.0000001"),
        ("12345678901234.567890", "12345678901234.567890"),  # 20 significant digits
        ("1." + "0" * 38, "1"),  # 40 characters
        ("-1E+2", "-100"),
    ],
)
def test_value_text_within_its_bounds_is_read_by_the_model(paths: Paths, v: str, text: str) -> None:
    assert values(via_model(paths, put(body(), V, v))) == [text]


@pytest.mark.parametrize(
    ("v", "reason", "kind"),
    [
        ("12345678901234.5678901", "more than 20 significant digits", "bounds"),
        ("1." + "0" * 39, "value text longer than 40 characters", "bounds"),
        ("9E+999999999999999999", "finite number", "bounds"),
        ("1e999999999", "finite number", "bounds"),
        ("1e15", "value out of bounds", "bounds"),
        ("0.9999999999999E-12", "value out of bounds", "bounds"),
        ("NaN", "finite", "bounds"),
        ("-Infinity", "finite", "bounds"),
    ],
)
def test_value_text_beyond_its_bounds_is_refused(
    paths: Paths, v: str, reason: str, kind: str
) -> None:
    assert reason_kind(refused(paths, put(body(), V, v), reason)) == kind


def test_each_point_keeps_its_own_unit_value_id_and_quality(paths: Paths) -> None:
    obj = body(
        point(key="energy_import_total_kwh", v=1234.56, u="kWh", id="00010000"),
        point(key="voltage_l1_v", v=230.1, u="V", q=3),
        point(key="current_l1_a", v=5, u="A"),
        point(key="frequency_hz", v=1e-07),
    )
    d = lean(paths, obj)
    assert [(r[1], r[2], r[3], r[8]) for r in d.rows] == [
        ("energy_import_total_kwh", "1234.56", "kWh", 0),
        ("voltage_l1_v", "230.1", "V", 128),
        ("current_l1_a", "5", "A", 0),
        ("frequency_hz", "0.0000001", "", 0),
    ]
    # Units repeated across meters are one string each (a message may carry 10,000 meters).
    two = body(readings=[obj["readings"][0], {**obj["readings"][0], "ts": BATCH_TS}])
    rows = lean(paths, two).rows
    assert rows[0][3] is rows[4][3]


def test_each_meter_keeps_its_own_time_and_the_batch_its_own(paths: Paths) -> None:
    first = {"meter": {"addr": "1", "proto": "modbus"}, "ts": "2030-01-01T00:00:00.250Z"}
    second = {"meter": {"addr": "2", "proto": "modbus"}, "ts": "2030-01-01T08:00:01+08:00"}
    obj = body(
        readings=[{**first, "points": [point()]}, {**second, "points": [point(), point()]}],
        ts="2030-01-01T00:00:02Z",
    )
    d = lean(paths, obj)
    t0 = 1_893_456_000_000
    assert [(r[0], r[4]) for r in d.rows] == [
        ("modbus:1", t0 + 250),
        ("modbus:2", t0 + 1000),
        ("modbus:2", t0 + 1000),
    ]
    assert (d.mark.gw, d.mark.seq, d.mark.ts_ms, d.mark.topic) == ("c1", 1, t0 + 2000, TOPIC)
    assert all(r[5:8] == ("concentrator", 7, TOPIC) and r[9] is None for r in d.rows)


def test_sub_millisecond_times_round_down_to_whole_ms(paths: Paths) -> None:
    d = lean(paths, body(ts="2030-01-01T00:00:00.999999Z"))
    assert d.mark.ts_ms == 1_893_456_000_999
    assert type(d.mark.ts_ms) is int
    d = lean(paths, put(body(), ("readings", 0, "ts"), "2030-01-01T05:30:00.0015+05:30"))
    assert d.rows[0][4] == 1_893_456_000_001
    assert type(d.rows[0][4]) is int


def test_readings_objects_carry_every_column() -> None:
    row = ("modbus:1", "voltage_l1_v", "230.5", "V", 5, "concentrator", 6, TOPIC, 128, 900)
    mark = decode_message(TOPIC, encode(body()), 7).mark
    (r,) = Decoded(mark, [row]).readings()
    assert (r.meter, r.key, r.unit, r.ts_ms) == ("modbus:1", "voltage_l1_v", "V", 5)
    assert r.value == Decimal("230.5")
    assert (r.ts_source, r.received_ms, r.source) == (TimeSource.CONCENTRATOR, 6, TOPIC)
    assert (r.quality, r.interval_s) == (Quality.DEVICE_FLAGGED, 900)


@pytest.mark.parametrize(
    ("v", "text"),
    [
        (0.5, "0.5"),
        (-0.5, "-0.5"),
        (1e-07, "0.0000001"),
        (-1.5e-12, "-0.0000000000015"),
        (1e-12, "0.000000000001"),
        (999999999999999.9, "999999999999999.9"),
        (100.0, "100"),
        (-0.0, "0"),
        (3, "3"),
        (-999999999999999, "-999999999999999"),
    ],
)
def test_the_general_value_rule(v: float, text: str) -> None:
    # _value is the whole rule; _lean inlines its commonest case (non-integral floats in
    # bounds) for speed, so the rule is tested here on its own.
    assert decode._value(v) == text


@pytest.mark.parametrize(
    "v",
    [
        1e15,
        -1e15,
        9.999999999999998e-13,
        10**15,
        -(10**15),
        2**63,
        float("nan"),
        float("inf"),
        True,
        "1",
        None,
        Decimal("1"),
    ],
)
def test_the_general_value_rule_leaves_the_rest_to_the_model(v: object) -> None:
    with pytest.raises(decode._NotLean):
        decode._value(v)
