"""Payload decoding at its edges: which path decides, and both sides of every bound.

The lean checker must vouch for every plainly valid shape (pydantic on every message
would cost more than the rest of the ingest path), hand everything else to the schema
model, and never accept what the model refuses. A test here therefore says which path
ran: ``parse_readings`` is wrapped to count its calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from gateway.ingest import decode
from gateway.ingest.decode import Decoded, decode_message, reason_kind
from protocols.concentrator import SEQ_MAX, PayloadError, ReadingsBatch
from tests.gateway.ingest.payloads import BATCH_TS

TOPIC = "meters/v1/c1/readings"
V = ("readings", 0, "points", 0, "v")


class Paths:
    """How often the schema model was asked since the last ``reset``."""

    def __init__(self) -> None:
        self.model = 0


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Paths:
    seen = Paths()
    real: Callable[[bytes | str], ReadingsBatch] = decode.parse_readings

    def counting(payload: bytes | str) -> ReadingsBatch:
        seen.model += 1
        return real(payload)

    monkeypatch.setattr(decode, "parse_readings", counting)
    return seen


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
    return decode._from_model(decode.parse_readings(encode(obj)), TOPIC, 7)


def values(d: Decoded) -> list[str]:
    return [row[2] for row in d.rows]


# (where, just inside, just outside, the reason's words)
EDGES: list[tuple[tuple[str | int, ...], Any, Any, str]] = [
    (("gw",), "g" * 64, "g" * 65, "gw: String should have at most 64"),
    (("gw",), "g", "", "gw: String should have at least 1"),
    (("readings", 0, "meter", "addr"), "a" * 32, "a" * 33, "addr: String should have at most 32"),
    (("readings", 0, "meter", "addr"), "1", "", "addr: String should have at least 1"),
    (("readings", 0, "meter", "port"), "p" * 64, "p" * 65, "port: String should have at most 64"),
    (("readings", 0, "points", 0, "u"), "u" * 16, "u" * 17, r"\.u: String should have at most"),
    (("readings", 0, "points", 0, "id"), "i" * 16, "i" * 17, r"\.id: String should have at most"),
    (("readings", 0, "points", 0, "q"), 255, 256, r"\.q: Input should be less than or equal"),
    (("readings", 0, "points", 0, "q"), 0, -1, r"\.q: Input should be greater than or equal"),
    (("seq",), SEQ_MAX, SEQ_MAX + 1, "seq: Input should be less than or equal"),
    (("seq",), 0, -1, "seq: Input should be greater than or equal"),
    (V, 1e-12, 9.999999999999998e-13, "out of bounds"),
    (V, -1e-12, -9.999999999999998e-13, "out of bounds"),
    (V, 999999999999999.9, 1e15, "out of bounds"),
    (V, -999999999999999.9, -1e15, "out of bounds"),
    (V, 999999999999999, 10**15, "out of bounds"),
    (V, -999999999999999, -(10**15), "out of bounds"),
]


@pytest.mark.parametrize(("where", "inside", "outside", "reason"), EDGES)
def test_both_sides_of_each_bound(
    paths: Paths, where: tuple[str | int, ...], inside: Any, outside: Any, reason: str
) -> None:
    d = lean(paths, put(body(), where, inside))
    assert len(d.rows) == 1
    refused(paths, put(body(), where, outside), reason)


def test_gw_may_not_hold_topic_wildcards_or_levels(paths: Paths) -> None:
    for bad in ("a+b", "a#b", "a/b"):
        obj = body(gw=bad)
        paths.model = 0
        with pytest.raises(PayloadError, match="gw: String should match pattern"):
            decode_message("meters/v1/ab/readings", encode(obj), 7)
        assert paths.model == 1
    assert lean(paths, body(gw="a-b.c:d_e f")).mark.gw == "a-b.c:d_e f"


def test_meter_address_characters(paths: Paths) -> None:
    assert lean(paths, put(body(), ("readings", 0, "meter", "addr"), "aZ09_.:-")).rows[0][0] == (
        "dlt645-2007:aZ09_.:-"
    )
    refused(paths, put(body(), ("readings", 0, "meter", "addr"), "a b"), "addr: String should")


@pytest.mark.parametrize("proto", ["dlt645-2007", "dlt645-1997", "modbus", "other"])
def test_each_protocol_names_the_meter(paths: Paths, proto: str) -> None:
    d = lean(paths, put(body(), ("readings", 0, "meter", "proto"), proto))
    assert d.rows[0][0] == f"{proto}:000000000001"


def test_points_per_meter_from_1_to_512(paths: Paths) -> None:
    many = [point(v=n + 0.5) for n in range(512)]
    assert values(lean(paths, body(*many))) == [f"{n}.5" for n in range(512)]
    refused(paths, body(*many, point()), "points: List should have at most 512")
    refused(paths, put(body(), ("readings", 0, "points"), []), "points: List should have at least")


def _meters(n: int) -> dict[str, Any]:
    item = {"meter": {"addr": "1", "proto": "modbus"}, "ts": BATCH_TS, "points": [point()]}
    return body(readings=[item] * n)


def test_readings_per_message_up_to_10000(paths: Paths) -> None:
    assert lean(paths, _meters(0)).rows == []
    assert len(lean(paths, _meters(10_000), max_bytes=1 << 22).rows) == 10_000
    paths.model = 0
    with pytest.raises(PayloadError, match="readings: List should have at most 10000"):
        decode_message(TOPIC, encode(_meters(10_001)), 7, max_bytes=1 << 22)
    assert paths.model == 1


def test_payload_size_limit_counts_bytes(paths: Paths) -> None:
    raw = encode(body())
    assert decode_message(TOPIC, raw, 7, max_bytes=len(raw)).rows
    with pytest.raises(PayloadError) as info:
        decode_message(TOPIC, raw, 7, max_bytes=len(raw) - 1)
    assert info.value.reason == (
        f"payload of {len(raw)} bytes exceeds max_payload_bytes {len(raw) - 1}"
    )
    assert reason_kind(info.value.reason) == "too_large"
    assert paths.model == 0  # refused before parsing
    # The default is 1 MiB; JSON allows whitespace after the value.
    mib = raw + b" " * (1024 * 1024 - len(raw))
    assert decode_message(TOPIC, mib, 7).rows
    with pytest.raises(PayloadError, match="1048577 bytes exceeds max_payload_bytes 1048576"):
        decode_message(TOPIC, mib + b" ", 7)


@pytest.mark.parametrize(
    ("where", "lax", "seen"),
    [
        (("seq",), True, 1),
        (("seq",), 1.0, 1),
        (("seq",), "5", 5),
        (("ts",), BATCH_TS.replace("T", " "), None),
        (("ts",), BATCH_TS.replace("Z", "z"), None),
        (("ts",), BATCH_TS.replace(":00Z", "Z"), None),
        (("readings", 0, "ts"), BATCH_TS.replace("Z", "+0000"), None),
        (V, "230.5", None),
        (("readings", 0, "points", 0, "q"), True, None),
        (("readings", 0, "points", 0, "q"), 1.0, None),
        (("readings", 0, "points", 0, "key"), 1, "refused"),
        (("readings", 0, "points", 0, "u"), None, "refused"),
        (("readings", 0, "points", 0, "id"), 5, "refused"),
        (("readings", 0, "meter", "port"), 5, "refused"),
        (("readings", 0, "meter", "proto"), "iec61107", "refused"),
        (("readings", 0, "meter"), [], "refused"),
        (("readings", 0, "points", 0), [], "refused"),
        (("readings", 0), [], "refused"),
        (("readings",), {}, "refused"),
        (("gw",), 7, "refused"),
        (("schema",), "metergw.readings/2", "refused"),
        (("ts",), BATCH_TS.replace("Z", ""), "refused"),
    ],
)
def test_lax_or_wrong_shapes_reach_the_model(
    paths: Paths, where: tuple[str | int, ...], lax: Any, seen: Any
) -> None:
    obj = put(body(), where, lax)
    if seen == "refused":
        refused(paths, obj, ".")
        return
    d = via_model(paths, obj)
    if seen is not None:
        assert d.mark.seq == seen
    strict = lean(paths, body())
    if where[-1] == "q":
        assert d.rows[0][8] != strict.rows[0][8] == 0
    else:
        assert d.rows == strict.rows


def test_missing_or_extra_keys_reach_the_model(paths: Paths) -> None:
    for key in ("schema", "gw", "seq", "ts", "readings"):
        obj = body()
        del obj[key]
        refused(paths, obj, f"{key}: Field required")
    refused(paths, body(extra=1), "extra: Extra inputs are not permitted")
    for where in (("readings", 0), ("readings", 0, "meter"), ("readings", 0, "points", 0)):
        refused(paths, put(body(), (*where, "extra"), 1), "Extra inputs")
    for where, key in (
        (("readings", 0), "ts"),
        (("readings", 0), "meter"),
        (("readings", 0, "meter"), "addr"),
        (("readings", 0, "meter"), "proto"),
        (("readings", 0, "points", 0), "key"),
        (("readings", 0, "points", 0), "v"),
    ):
        obj = body()
        node: Any = obj
        for part in where:
            node = node[part]
        del node[key]
        refused(paths, obj, f"{key}: Field required")
    refused(paths, put(body(), V, True), "Decimal input")
    refused(paths, put(body(), V, None), "Decimal input")
    refused(paths, put(body(), ("readings", 0, "points", 0, "key"), "energy_bogus"), "unknown")


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("readings", 0, "meter", "port"), None),
        (("readings", 0, "points", 0, "id"), None),
        (("readings", 0, "points", 0, "id"), "00010000"),
        (("readings", 0, "meter", "port"), "rs485-1"),
        (("readings", 0, "ts"), BATCH_TS.replace("Z", ".250+08:00")),
        (("readings", 0, "ts"), BATCH_TS.replace("Z", ".123456-05:30")),
    ],
)
def test_optional_and_plain_forms_stay_on_the_lean_path(
    paths: Paths, where: tuple[str | int, ...], value: Any
) -> None:
    obj = put(body(), where, value)
    assert lean(paths, obj).rows == by_model(obj).rows


def test_seq_extremes_and_non_integers(paths: Paths) -> None:
    assert lean(paths, body(seq=SEQ_MAX)).mark.seq == SEQ_MAX
    assert lean(paths, body(seq=0)).mark.seq == 0
    refused(paths, body(seq=1.5), "seq: Input should be a valid integer, got a number with a frac")
    refused(paths, body(seq=2**64), "seq: Input should be less than or equal")
    assert via_model(paths, body(seq=True)).mark.seq == 1


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
        ("1." + "0" * 39, "value text longer than 40 characters", "schema"),
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
