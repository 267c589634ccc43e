"""Payload decoding at its edges: which path decides, and both sides of every bound.

The lean checker must vouch for every plainly valid shape (pydantic on every message
would cost more than the rest of the ingest path), hand everything else to the schema
model, and never accept what the model refuses. Each test therefore says which path
ran (tests/gateway/ingest/decoding.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.ingest.decode import decode_message, reason_kind
from protocols.concentrator import SEQ_MAX, PayloadError
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
    ("where", "lax"),
    [
        (("ts",), BATCH_TS.replace("T", " ")),
        (("ts",), BATCH_TS.replace("Z", "z")),
        (("ts",), BATCH_TS.replace(":00Z", "Z")),
        (("readings", 0, "ts"), BATCH_TS.replace("Z", "+0000")),
        (V, "230.5"),
        (("readings", 0, "points", 0, "q"), 0.0),
    ],
)
def test_lax_shapes_reach_the_model_and_mean_the_same(
    paths: Paths, where: tuple[str | int, ...], lax: Any
) -> None:
    assert via_model(paths, put(body(), where, lax)).rows == lean(paths, body()).rows


def test_a_lax_quality_flag_is_still_a_flag(paths: Paths) -> None:
    for lax in (True, 1.0):
        d = via_model(paths, put(body(), ("readings", 0, "points", 0, "q"), lax))
        assert d.rows[0][8] == 128


@pytest.mark.parametrize(
    ("where", "wrong", "reason"),
    [
        (("readings", 0, "points", 0, "key"), 1, "key: Input should be a valid string"),
        (("readings", 0, "points", 0, "u"), None, "u: Input should be a valid string"),
        (("readings", 0, "points", 0, "id"), 5, "id: Input should be a valid string"),
        (("readings", 0, "meter", "port"), 5, "port: Input should be a valid string"),
        (("readings", 0, "meter", "proto"), "iec61107", "proto: Input should be 'dlt645-2007'"),
        (("readings", 0, "meter"), [], "0.meter: Input should be an object"),
        (("readings", 0, "points", 0), [], "points.0: Input should be an object"),
        (("readings", 0), [], "readings.0: Input should be an object"),
        (("readings",), {}, "readings: Input should be a valid array"),
        (("gw",), 7, "gw: Input should be a valid string"),
        (("schema",), "metergw.readings/2", "schema: Input should be 'metergw.readings/1'"),
        (("ts",), BATCH_TS.replace("Z", ""), "ts: Input should have timezone info"),
    ],
)
def test_wrong_shapes_reach_the_model_and_are_refused(
    paths: Paths, where: tuple[str | int, ...], wrong: Any, reason: str
) -> None:
    assert reason_kind(refused(paths, put(body(), where, wrong), reason)) == "schema"


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
    refused(paths, body(seq="one"), "seq: Input should be a valid integer")
    # Lax forms the schema reads as integers: the model decides them.
    assert via_model(paths, body(seq=True)).mark.seq == 1
    assert via_model(paths, body(seq=7.0)).mark.seq == 7
    assert via_model(paths, body(seq="5")).mark.seq == 5
