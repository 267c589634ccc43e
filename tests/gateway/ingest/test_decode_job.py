"""From a decoded message to its write job: the time window, the content key, the reasons.

Also the two decode paths held to each other: for any payload the lean checker accepts,
the schema model's path makes exactly the same rows.
"""

from __future__ import annotations

import hashlib
import re
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.buffer import Outcome
from gateway.ingest import decode
from gateway.ingest.decode import TimeWindow, decode_message, digest, message_job, reason_kind
from gateway.model import EventKind
from protocols.concentrator import SEQ_MAX, PayloadError, ReadingsBatch, parse_readings
from protocols.quantities import QUANTITIES

TOPIC = "meters/v1/c1/readings"
T0 = 1_893_456_000_000
"""2030-01-01T00:00:00Z in ms: a window's lower edge in these tests."""


def iso(ms: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat()


def message(*stamps: int, points: int = 1) -> bytes:
    """One meter per stamp (ms), ``points`` voltage points each."""
    return orjson.dumps(
        {
            "schema": "metergw.readings/1",
            "gw": "c1",
            "seq": 9,
            "ts": iso(T0),
            "readings": [
                {
                    "meter": {"addr": str(n), "proto": "modbus"},
                    "ts": iso(ms),
                    "points": [{"key": "voltage_l1_v", "v": 230.5, "u": "V"}] * points,
                }
                for n, ms in enumerate(stamps)
            ],
        }
    )


WINDOW = TimeWindow(T0, T0 + 3_600_000)


def test_window_edges_are_inside() -> None:
    lo, hi = WINDOW.min_ms, WINDOW.max_ms
    d = decode_message(TOPIC, message(lo - 1, lo, hi, hi + 1), 5, window=WINDOW)
    assert [r[4] for r in d.rows] == [lo, hi]
    assert [(row[4], why) for row, why in d.refused] == [
        (lo - 1, "timestamp 2029-12-31T23:59:59.999000Z is before 2030-01-01T00:00:00Z"),
        (
            hi + 1,
            "timestamp 2030-01-01T01:00:00.001000Z is after 2030-01-01T01:00:00Z"
            " (ahead of our clock)",
        ),
    ]
    assert WINDOW.why_not(lo) is None
    assert WINDOW.why_not(hi) is None


@pytest.fixture
def splits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many readings each call of the window split was given (it should run only when
    a reading is outside the window: on a clean message it is wasted work per message)."""
    calls: list[int] = []
    split = decode._split

    def counting(d: decode.Decoded, window: TimeWindow) -> decode.Decoded:
        calls.append(len(d.rows))
        return split(d, window)

    monkeypatch.setattr(decode, "_split", counting)
    return calls


def lax(raw: bytes) -> bytes:
    """The same message with its seq as a string: only the schema model takes that."""
    return raw.replace(b'"seq":9', b'"seq":"9"')


@pytest.mark.parametrize("form", [bytes, lax], ids=["lean", "model"])
def test_the_window_split_runs_only_when_a_reading_is_outside(
    splits: list[int], form: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lean checker finds outside readings as it goes and splits only then; the model's
    # path (lax payloads, rare) splits whenever there is a window.
    inside = [] if form is bytes else [2]
    model = []
    real_parse = decode.parse_readings
    monkeypatch.setattr(decode, "parse_readings", lambda raw: model.append(1) or real_parse(raw))
    lo, hi = WINDOW.min_ms, WINDOW.max_ms
    d = decode_message(TOPIC, form(message(lo, hi)), 5, window=WINDOW)  # both edges inside
    assert (len(d.rows), d.refused, splits) == (2, [], inside)
    d = decode_message(TOPIC, form(message(lo, hi)), 5)  # no window at all
    assert (len(d.rows), splits) == (2, inside)
    d = decode_message(TOPIC, form(message(lo, lo - 1, hi + 1)), 5, window=WINDOW)
    assert [r[4] for r in d.rows] == [lo]
    assert [row[4] for row, _ in d.refused] == [lo - 1, hi + 1]
    assert splits == [*inside, 3]
    assert len(model) == (3 if form is lax else 0)  # the path the case is about did run


def test_a_window_that_refuses_nothing_leaves_the_message_as_it_was() -> None:
    raw = message(T0, T0 + 1)
    d = decode_message(TOPIC, raw, 5, window=WINDOW)
    assert d == decode_message(TOPIC, raw, 5)
    assert d.refused == []
    # Without a window nothing is refused, however old.
    assert len(decode_message(TOPIC, message(0, T0 * 2), 5).rows) == 2


def test_a_time_too_far_for_a_date_is_named_in_ms() -> None:
    assert TimeWindow(0, 10).why_not(2**62) == (
        "timestamp 4611686018427387904 ms is after 1970-01-01T00:00:00.010000Z (ahead of our clock)"
    )


def test_message_job_keys_the_message_by_its_content() -> None:
    raw = message(T0)
    d = decode_message(TOPIC, raw, 5, window=WINDOW)
    job = message_job(TOPIC, raw, 5, d)
    assert job.once == ("c1", hashlib.blake2b(raw, digest_size=16).digest())
    assert job.once[1] == digest(raw)
    assert len(digest(raw)) == 16
    assert digest(raw + b" ") != digest(raw)
    assert (job.rows, job.mark, job.origin, job.subject) == (d.rows, d.mark, "ingest", TOPIC)
    assert job.outcome is Outcome.ACCEPTED
    assert (job.quarantine, job.events) == ((), ())
    (repeat,) = job.repeat_events
    assert (repeat.kind, repeat.ts_ms, repeat.subject) == (EventKind.MESSAGE_REPEATED, 5, "c1")
    assert repeat.reason == "message seq 9 received again: already stored, acknowledged"
    assert repeat.detail == {"topic": TOPIC, "seq": 9}


def test_refused_readings_are_quarantined_with_their_reason() -> None:
    raw = message(T0 - 1, T0)
    d = decode_message(TOPIC, raw, 5, window=WINDOW)
    job = message_job(TOPIC, raw, 5, d)
    assert job.rows == d.rows
    assert len(job.rows) == 1
    why = "timestamp 2029-12-31T23:59:59.999000Z is before 2030-01-01T00:00:00Z"
    (entry,) = job.quarantine
    assert (entry.origin, entry.subject, entry.kind) == ("ingest", TOPIC, "timestamp")
    assert entry.reason == f"1 reading(s) refused: {why}"
    assert orjson.loads(entry.payload) == [["modbus:0", "voltage_l1_v", "230.5", "V", T0 - 1, why]]
    (event,) = job.events
    assert (event.kind, event.ts_ms, event.subject) == (EventKind.READINGS_QUARANTINED, 5, "c1")
    assert event.reason == entry.reason
    assert event.detail == {"topic": TOPIC, "seq": 9, "readings": 1}


def test_many_refused_readings_keep_a_bounded_sample_and_count_the_reasons() -> None:
    hi = WINDOW.max_ms
    raw = message(T0 - 1, T0 - 1, hi + 1, points=400)
    d = decode_message(TOPIC, raw, 5, max_bytes=1 << 20, window=WINDOW)
    assert d.rows == []
    assert len(d.refused) == 1200
    job = message_job(TOPIC, raw, 5, d)
    (entry,) = job.quarantine
    assert entry.reason == (
        "1200 reading(s) refused: timestamp 2029-12-31T23:59:59.999000Z is before"
        " 2030-01-01T00:00:00Z (+1 more reasons)"
    )
    assert len(orjson.loads(entry.payload)) == 1000
    assert job.events[0].detail["readings"] == 1200


def test_a_model_failure_of_any_kind_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(payload: bytes | str) -> ReadingsBatch:
        raise RuntimeError("x" * 300)

    monkeypatch.setattr(decode, "parse_readings", broken)
    with pytest.raises(PayloadError) as info:
        decode_message(TOPIC, b"[]", 0)
    assert info.value.reason == ("undecodable payload: RuntimeError: " + "x" * 300)[:200]
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert reason_kind(info.value.reason) == "undecodable"


def test_the_lean_path_never_asks_the_model_or_the_slow_value_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []
    real = decode._value

    def counted(v: Any) -> str:
        calls.append(v)
        return real(v)

    monkeypatch.setattr(decode, "_value", counted)
    monkeypatch.setattr(decode, "parse_readings", None)  # any call fails the test
    raw = orjson.dumps(
        {
            "schema": "metergw.readings/1",
            "gw": "c1",
            "seq": 1,
            "ts": iso(T0),
            "readings": [
                {
                    "meter": {"addr": "1", "proto": "modbus"},
                    "ts": iso(T0),
                    "points": [{"key": "voltage_l1_v", "v": v} for v in (230.5, 1e-7, 1e-12)]
                    + [{"key": "voltage_l1_v", "v": v} for v in (3, 4.0, 0.0)],
                }
            ],
        }
    )
    d = decode_message(TOPIC, raw, 0)
    assert [r[2] for r in d.rows] == ["230.5", "0.0000001", "0.000000000001", "3", "4", "0"]
    assert calls == [3, 4.0, 0.0]  # non-integral floats in bounds take the inline case


def test_a_timestamp_shared_by_many_readings_is_parsed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    class Counting:
        def fullmatch(self, text: str) -> re.Match[str] | None:
            seen.append(text)
            return pattern.fullmatch(text)

    pattern = decode._TS
    monkeypatch.setattr(decode, "_TS", Counting())
    d = decode_message(TOPIC, message(T0, T0, T0 + 1, T0), 0)
    assert [r[4] for r in d.rows] == [T0, T0, T0 + 1, T0]
    assert seen == [iso(T0), iso(T0 + 1)]


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("payload of 9 bytes exceeds max_payload_bytes 8", "too_large"),
        ("timestamp 1999-12-31T23:59:59Z is before 2000-01-01T00:00:00Z", "timestamp"),
        ("undecodable payload: MemoryError: ", "undecodable"),
        ("readings.0.points.0.v: Value error, value out of bounds (magnitude ...)", "bounds"),
        ("readings.0.points.0.v: Value error, value has more than 20 significant digits", "bounds"),
        ("readings.0.points.0.v: Input should be a finite number", "bounds"),
        ("readings.0.points.0.v: Value error, value text longer than 40 characters", "bounds"),
        ("topic 'x' is not meters/v1/{gw}/readings", "topic"),
        ("gw 'c2' does not match the topic's 'c1'", "topic"),
        ("payload: Invalid JSON: EOF while parsing a value", "json"),
        ("expected json", "json"),
        ("seq: Input should be a valid integer", "schema"),
        ("a timestamp out of bounds", "bounds"),
        ("gw: Field required", "schema"),
    ],
)
def test_each_reason_has_a_short_kind(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind


@pytest.mark.parametrize(
    ("topic", "payload", "kind"),
    [
        ("other/topic", b"{}", "topic"),
        ("meters/v1/c1/status", None, "topic"),
        ("meters/v1//readings", None, "topic"),
        ("meters/v2/c1/readings", None, "topic"),
        ("meters/v1/c2/readings", None, "topic"),
        (TOPIC, b"{not json", "json"),
        (TOPIC, b'{"schema":"metergw.readings/1"}', "schema"),
    ],
)
def test_real_rejections_have_their_kind(topic: str, payload: bytes | None, kind: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_message(topic, payload or message(T0), 0)
    assert reason_kind(info.value.reason) == kind


# Valid payloads of every plain shape, to hold the two paths to each other.
_TEXT = st.text(st.characters(codec="utf-8"), max_size=16)


@st.composite
def _stamps(draw: st.DrawFn) -> str:
    at = draw(st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1)))
    text = at.strftime("%Y-%m-%dT%H:%M:%S")
    digits = draw(st.integers(0, 6))
    if digits:
        text += "." + f"{at.microsecond:06d}"[:digits]
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    if minutes == 0 and draw(st.booleans()):
        return text + "Z"
    sign = "-" if minutes < 0 else "+"
    return text + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


_VALUES = st.one_of(
    st.integers(-(10**15) + 1, 10**15 - 1),
    st.integers(-(10**15) + 1, 10**15 - 1).map(float),
    st.floats(1e-12, 1e15, exclude_max=True),
    st.floats(-1e15, -1e-12, exclude_min=True),
    st.sampled_from([0.0, -0.0, 1e-7, 0.1, 123456.78]),
)


def _point() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"key": st.sampled_from(sorted(QUANTITIES)), "v": _VALUES},
        optional={"u": _TEXT, "q": st.integers(0, 255), "id": st.none() | _TEXT},
    )


_READING = st.fixed_dictionaries(
    {
        "meter": st.fixed_dictionaries(
            {
                "addr": st.from_regex(r"[0-9A-Za-z_.:-]{1,32}", fullmatch=True),
                "proto": st.sampled_from(["dlt645-2007", "dlt645-1997", "modbus", "other"]),
            },
            optional={"port": st.none() | st.text(max_size=64)},
        ),
        "ts": _stamps(),
        "points": st.lists(_point(), min_size=1, max_size=4),
    }
)
_BATCH = st.fixed_dictionaries(
    {
        "schema": st.just("metergw.readings/1"),
        "gw": st.text(
            st.characters(codec="utf-8", exclude_characters="/+#"),
            min_size=1,
            max_size=64,
        ),
        "seq": st.integers(0, SEQ_MAX),
        "ts": _stamps(),
        "readings": st.lists(_READING, max_size=3),
    }
)


_MS_2000 = 946_684_800_000
_MS_2100 = 4_102_444_800_000


@settings(max_examples=300, deadline=None)
@given(
    obj=_BATCH,
    window=st.one_of(
        st.just(decode._OPEN),
        st.tuples(st.integers(_MS_2000, _MS_2100), st.integers(0, 50 * 365 * 86_400_000)).map(
            lambda t: TimeWindow(t[0], t[0] + t[1])
        ),
    ),
)
def test_the_lean_path_and_the_model_make_the_same_rows(
    obj: dict[str, Any], window: TimeWindow
) -> None:
    raw = orjson.dumps(obj)
    # The lean path splits off the readings outside the window itself (only when a
    # meter's stamp is outside it); the model path splits afterwards: the same result.
    lean = decode._lean(orjson.loads(raw), TOPIC, 11, window)
    model = decode._split(decode._from_model(parse_readings(raw), TOPIC, 11), window)
    assert lean == model
    assert {r[4] for r, _ in lean.refused}.isdisjoint(r[4] for r in lean.rows)
    assert all(set(r[2]) <= set(string.digits + "-.") for r in lean.rows)
