"""Concentrator payload -> readings, with the schema's rules and a fast path.

Validation is the schema's (:mod:`protocols.concentrator`). Running pydantic on
every message costs more than the whole rest of the ingest path, so a lean
checker built on orjson handles the common, plainly valid shape; it accepts
only what the pydantic model accepts (a property test holds it to that). What
the lean checker does not recognise goes to ``parse_readings``, which either
accepts it (lax forms such as numbers in strings) or gives the reason.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, get_args

import orjson

from gateway.buffer import ConcentratorMark, QuarantineEntry, ReadingValues, WriteJob
from gateway.model import (
    Event,
    EventKind,
    Quality,
    Reading,
    TimeSource,
    decimal_text,
    reading_of,
)
from protocols.concentrator import (
    READINGS_SCHEMA,
    SEQ_MAX,
    VALUE_MAX,
    VALUE_MIN_EXPONENT,
    MeterProtocol,
    PayloadError,
    ReadingsBatch,
    gw_from_topic,
    parse_readings,
)
from protocols.quantities import QUANTITIES

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")
_ADDR = re.compile(r"[0-9A-Za-z_.:-]+")
_PROTOS = frozenset(get_args(MeterProtocol))  # the schema's list, not a copy of it
_TOP_KEYS = frozenset({"schema", "gw", "seq", "ts", "readings"})
_READING_KEYS = frozenset({"meter", "ts", "points"})
_METER_KEYS = frozenset({"addr", "proto", "port"})
_POINT_KEYS = frozenset({"id", "key", "v", "u", "q"})
_KEYS = {k: k for k in QUANTITIES}
_EXACT = 2.0**53
# The schema's value bounds (protocols.concentrator.bounded_value), as floats and ints for
# the lean path: a float's shortest repr has at most 17 digits, within VALUE_DIGITS.
_FLOAT_MAX = float(VALUE_MAX)
_FLOAT_MIN = 10.0**VALUE_MIN_EXPONENT
_INT_MAX = int(VALUE_MAX)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Measurement times a reading may carry, ms UTC, inclusive: outside it a reading is
    refused (a TSDB drops such points silently, and billing must not see them)."""

    min_ms: int
    max_ms: int

    def why_not(self, ts_ms: int) -> str | None:
        """Why ``ts_ms`` is outside the window, or ``None``."""
        if ts_ms < self.min_ms:
            return f"timestamp {_iso(ts_ms)} is before {_iso(self.min_ms)}"
        if ts_ms > self.max_ms:
            return f"timestamp {_iso(ts_ms)} is after {_iso(self.max_ms)} (ahead of our clock)"
        return None


_OPEN = TimeWindow(-(2**62), 2**62)


def _iso(ts_ms: int) -> str:
    try:
        return (_EPOCH + ts_ms * _MS).isoformat().replace("+00:00", "Z")
    except OverflowError:
        return f"{ts_ms} ms"


@dataclass(frozen=True, slots=True)
class Decoded:
    """A valid message: where it stands in its concentrator's sequence, and its readings.

    ``rows`` are the readings in the buffer's column form (value as exact
    decimal text), built straight from the JSON: making a ``Reading`` object
    per value would cost more than validating and storing it.
    """

    mark: ConcentratorMark
    rows: list[ReadingValues]
    refused: list[tuple[ReadingValues, str]] = field(default_factory=list)
    """Readings of the message refused one by one, with the reason (outside the window)."""

    def readings(self) -> list[Reading]:
        """The same readings as :class:`~gateway.model.Reading` objects."""
        return [reading_of(values) for values in self.rows]


class _NotLean(Exception):
    """The lean checker does not vouch for this payload; pydantic decides."""


def _ms(dt: datetime) -> int:
    return (dt - _EPOCH) // _MS


def _value(v: Any) -> str:
    # The decimal text of the Decimal pydantic makes of a JSON number: the float's
    # shortest repr, integral floats as integers, never exponent notation.
    if type(v) is int and -_INT_MAX < v < _INT_MAX:
        return str(v)
    # orjson reads integers beyond 64 bits as floats: leave those to pydantic, which keeps them.
    if type(v) is float and math.isfinite(v) and abs(v) < _EXACT and _in_bounds(v):
        if v.is_integer():
            return str(int(v))
        text = repr(v)
        return format(Decimal(text), "f") if "e" in text else text
    raise _NotLean


def _in_bounds(v: float) -> bool:
    return v == 0 or _FLOAT_MIN <= abs(v) < _FLOAT_MAX


def _lean(obj: Any, topic: str, received_ms: int, window: TimeWindow) -> Decoded:
    if type(obj) is not dict or obj.keys() != _TOP_KEYS:
        raise _NotLean
    gw, seq, ts, items = obj["gw"], obj["seq"], obj["ts"], obj["readings"]
    if obj["schema"] != READINGS_SCHEMA or type(gw) is not str or not 0 < len(gw) <= 64:
        raise _NotLean
    if "/" in gw or "+" in gw or "#" in gw or type(seq) is not int or not 0 <= seq <= SEQ_MAX:
        raise _NotLean
    if type(items) is not list or len(items) > 10_000:
        raise _NotLean
    stamps: dict[str, int] = {}
    units: dict[str, str] = {}

    def stamp(text: Any) -> int:
        if type(text) is not str:
            raise _NotLean
        ms = stamps.get(text)
        if ms is None:
            if not _TS.fullmatch(text):
                raise _NotLean
            ms = stamps[text] = _ms(datetime.fromisoformat(text))
        return ms

    batch_ms = stamp(ts)
    lo, hi = window.min_ms, window.max_ms
    outside = False
    out: list[ReadingValues] = []
    append = out.append
    conc = TimeSource.CONCENTRATOR.value
    flagged = int(Quality.DEVICE_FLAGGED)
    for item in items:
        if type(item) is not dict or item.keys() != _READING_KEYS:
            raise _NotLean
        meter, points = item["meter"], item["points"]
        if type(meter) is not dict or not meter.keys() <= _METER_KEYS:
            raise _NotLean
        addr, proto, port = meter.get("addr"), meter.get("proto"), meter.get("port")
        if type(addr) is not str or not 0 < len(addr) <= 32 or not _ADDR.fullmatch(addr):
            raise _NotLean
        if type(proto) is not str or proto not in _PROTOS:
            raise _NotLean
        if not (port is None or (type(port) is str and len(port) <= 64)):
            raise _NotLean
        if type(points) is not list or not 0 < len(points) <= 512:
            raise _NotLean
        ts_ms = stamp(item["ts"])
        if not lo <= ts_ms <= hi:  # once per meter: the window split runs only when needed
            outside = True
        meter_id = f"{proto}:{addr}"
        for p in points:
            if type(p) is not dict or not p.keys() <= _POINT_KEYS:
                raise _NotLean
            key, unit, q, pid = p.get("key"), p.get("u", ""), p.get("q", 0), p.get("id")
            # The registry's own key object: one string shared by every row that names it.
            key = _KEYS.get(key) if type(key) is str else None
            if key is None or type(unit) is not str:
                raise _NotLean
            if len(unit) > 16 or type(q) is not int or not 0 <= q <= 255:
                raise _NotLean
            if not (pid is None or (type(pid) is str and len(pid) <= 16)):
                raise _NotLean
            unit = units.setdefault(unit, unit)
            v = p.get("v")
            # The common case inline (see _value): a finite, non-integral float in plain notation.
            if type(v) is float and _FLOAT_MIN <= abs(v) < _FLOAT_MAX and not v.is_integer():
                text = repr(v)
                if "e" in text:
                    text = format(Decimal(text), "f")
            else:
                text = _value(v)
            append(
                (
                    meter_id,
                    key,
                    text,
                    unit,
                    ts_ms,
                    conc,
                    received_ms,
                    topic,
                    flagged if q else 0,
                    None,
                )
            )
    decoded = Decoded(ConcentratorMark(gw, seq, batch_ms, topic), out)
    return _split(decoded, window) if outside else decoded


def _split(decoded: Decoded, window: TimeWindow) -> Decoded:
    """The message with its readings stamped outside ``window`` moved to ``refused``."""
    rows: list[ReadingValues] = []
    refused: list[tuple[ReadingValues, str]] = []
    lo, hi = window.min_ms, window.max_ms
    for row in decoded.rows:
        if lo <= row[4] <= hi:
            rows.append(row)
        else:
            refused.append((row, window.why_not(row[4]) or ""))
    if not refused:
        return decoded
    return Decoded(decoded.mark, rows, refused)


def _model_text(v: Decimal) -> str:
    # pydantic makes Decimal("100.0") of the JSON number 100.0, which the lean path stores as
    # "100": integral values are integers on both paths, so that a reading's text does not
    # depend on which path its message took (bounded_value keeps them below 10^15).
    return str(int(v)) if v == v.to_integral_value() else decimal_text(v)


def _from_model(batch: ReadingsBatch, topic: str, received_ms: int) -> Decoded:
    conc = TimeSource.CONCENTRATOR.value
    flagged = int(Quality.DEVICE_FLAGGED)
    out: list[ReadingValues] = [
        (
            f"{item.meter.proto}:{item.meter.addr}",
            p.key,
            _model_text(p.v),
            p.u,
            _ms(item.ts),
            conc,
            received_ms,
            topic,
            flagged if p.q else 0,
            None,
        )
        for item in batch.readings
        for p in item.points
    ]
    return Decoded(ConcentratorMark(batch.gw, batch.seq, _ms(batch.ts), topic), out)


def decode_message(
    topic: str,
    payload: bytes,
    received_ms: int,
    max_bytes: int = 1024 * 1024,
    window: TimeWindow = _OPEN,
) -> Decoded:
    """Validate one message from ``topic``; raise :class:`PayloadError` with the reason.

    Whatever the payload makes the decoder raise is a :class:`PayloadError`: no payload can
    leave a message undecided. Readings stamped outside ``window`` are moved to
    ``Decoded.refused``; the rest of the message stands.
    """
    if len(payload) > max_bytes:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds max_payload_bytes {max_bytes}")
    topic_gw = gw_from_topic(topic)
    if topic_gw is None:
        raise PayloadError(f"topic {topic!r} is not meters/v1/{{gw}}/readings")
    try:
        try:
            decoded = _lean(orjson.loads(payload), topic, received_ms, window)
        except (_NotLean, orjson.JSONDecodeError, ValueError, OverflowError, TypeError):
            model = _from_model(parse_readings(payload), topic, received_ms)
            decoded = model if window is _OPEN else _split(model, window)
    except PayloadError:
        raise
    except Exception as exc:  # MemoryError, RecursionError...: a reason, never a stall
        raise PayloadError(f"undecodable payload: {type(exc).__name__}: {exc}"[:200]) from None
    if decoded.mark.gw != topic_gw:
        raise PayloadError(f"gw {decoded.mark.gw!r} does not match the topic's {topic_gw!r}")
    return decoded


_GIL_CHUNK = 2047
"""hashlib lets go of the GIL for updates of 2048 bytes or more; taking it back behind a
busy thread (the buffer's writer) can cost a whole switch interval (5 ms) per message.
Chunks below that keep it: a 10 KB message costs five short updates instead."""


def digest(payload: bytes) -> bytes:
    """The identity of a message's content: a resend of the same bytes has the same one."""
    h = hashlib.blake2b(digest_size=16)
    view = memoryview(payload)
    for start in range(0, len(view), _GIL_CHUNK):
        h.update(view[start : start + _GIL_CHUNK])
    return h.digest()


def message_job(topic: str, payload: bytes, received_ms: int, d: Decoded) -> WriteJob:
    """The write job of a valid message: its rows, its seq mark, its content key (a resend
    of the same bytes is a repeat: stored once, then only a ``message_repeated`` event),
    and the readings it carried that were refused (quarantined, with an event)."""
    gw = d.mark.gw
    repeat = Event(
        EventKind.MESSAGE_REPEATED,
        received_ms,
        gw,
        f"message seq {d.mark.seq} received again: already stored, acknowledged",
        {"topic": topic, "seq": d.mark.seq},
    )
    job = WriteJob(
        rows=d.rows,
        mark=d.mark,
        once=(gw, digest(payload)),
        repeat_events=(repeat,),
        origin="ingest",
        subject=topic,
    )
    if d.refused:
        reasons = sorted({why for _, why in d.refused})
        reason = f"{len(d.refused)} reading(s) refused: {reasons[0]}" + (
            f" (+{len(reasons) - 1} more reasons)" if len(reasons) > 1 else ""
        )
        content = orjson.dumps([[*row[:5], why] for row, why in d.refused[:1000]])
        job.quarantine = (
            QuarantineEntry("ingest", topic, reason, content, kind=reason_kind(reasons[0])),
        )
        job.events = (
            Event(
                EventKind.READINGS_QUARANTINED,
                received_ms,
                gw,
                reason,
                {"topic": topic, "seq": d.mark.seq, "readings": len(d.refused)},
            ),
        )
    return job


def reason_kind(reason: str) -> str:
    """A short, bounded label for the rejection counter (the full reason goes to the log)."""
    if reason.startswith("payload of"):
        return "too_large"
    if reason.startswith("timestamp"):
        return "timestamp"
    if reason.startswith("undecodable"):
        return "undecodable"
    if "out of bounds" in reason or "significant digits" in reason or "finite" in reason:
        return "bounds"
    if "value text longer than" in reason:  # the bound checked before reading the number
        return "bounds"
    if reason.startswith("topic") or reason.startswith("gw "):
        return "topic"
    if "JSON" in reason or "json" in reason:
        return "json"
    return "schema"
