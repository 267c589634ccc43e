"""InfluxDB line protocol for buffered rows, built as plain strings.

A point's identity is deterministic: series from the reading (measurement and
the tags ``meter``, ``quality``, ``quantity``, ``source``), timestamp the
reading's own ``ts_ms``. A replayed batch therefore overwrites the same points.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.buffer import EventRow, ReadingRow
from gateway.model import Quality

EVENT_MEASUREMENT = "metergw_event"

# Tag keys/values: escape comma, equals sign, space and backslash. A newline
# cannot be escaped in line protocol, so it becomes the two characters "\n".
_TAG = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\\": "\\\\", "\n": "\\n", "\r": ""})
_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", "\\": "\\\\", "\n": "\\n", "\r": ""})
_STRING_FIELD = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": ""})

_tag_cache: dict[str, str] = {}
_quality_cache: dict[int, str] = {}


def escape_tag(value: str) -> str:
    """A tag key or value, escaped (cached: meters and sources repeat)."""
    out = _tag_cache.get(value)
    if out is None:
        if len(_tag_cache) > 100_000:
            _tag_cache.clear()
        out = _tag_cache[value] = value.translate(_TAG)
    return out


def escape_measurement(name: str) -> str:
    """A measurement name, escaped."""
    return name.translate(_MEASUREMENT)


def quality_tag(bits: int) -> str:
    """``ok`` or the flag names joined with ``+`` (``estimated+backfilled``)."""
    out = _quality_cache.get(bits)
    if out is None:
        out = _quality_cache[bits] = "+".join(Quality(bits).names()) or "ok"
    return out


def reading_lines(measurement: str, rows: Iterable[ReadingRow]) -> list[str]:
    """One line per reading, in row order."""
    m = escape_measurement(measurement)
    tag = escape_tag
    # The tags after ``meter`` repeat across a batch (few keys, flags and sources):
    # escape them once per batch, not once per row.
    tails: dict[tuple[int, str, str], str] = {}
    out: list[str] = []
    append = out.append
    for _seq, meter, key, value, _unit, ts_ms, _tsrc, _recv, source, quality, interval in rows:
        ident = (quality, key, source)
        tail = tails.get(ident)
        if tail is None:
            tail = tails[ident] = (
                f",quality={quality_tag(quality)},quantity={tag(key)},source={tag(source)} value="
            )
        if interval is None:
            append(f"{m},meter={tag(meter)}{tail}{value} {ts_ms}")
        else:
            append(f"{m},meter={tag(meter)}{tail}{value},interval_s={interval}i {ts_ms}")
    return out


def event_lines(rows: Iterable[EventRow]) -> list[str]:
    """One line per event: tags ``kind`` and ``subject``; fields ``value=1i`` and ``reason``."""
    out: list[str] = []
    for _seq, kind, ts_ms, subject, reason, _detail in rows:
        out.append(
            f"{EVENT_MEASUREMENT},kind={escape_tag(kind)},subject={escape_tag(subject) or '-'} "
            f'value=1i,reason="{reason.translate(_STRING_FIELD)}" {ts_ms}'
        )
    return out
