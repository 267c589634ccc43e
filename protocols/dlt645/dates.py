"""Clock fields: dates and times as BCD bytes, least significant field first.

Each layout lists the fields in wire order. ``YYMMDDhhmm`` (a freeze time)
goes on the wire as ``mm hh DD MM YY``; the weekday ``WW`` counts from
0 = Sunday. Years are 2000 + YY. Times are naive meter-local time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

Layout = tuple[str, ...]

LAYOUTS: Final[dict[str, Layout]] = {
    "date": ("weekday", "day", "month", "year"),  # YYMMDDWW
    "time": ("second", "minute", "hour"),  # hhmmss
    "datetime": ("second", "minute", "hour", "weekday", "day", "month", "year"),
    "freeze_time": ("minute", "hour", "day", "month", "year"),  # YYMMDDhhmm
    "broadcast": ("second", "minute", "hour", "day", "month", "year"),  # ss mm hh DD MM YY
}
"""Wire layouts of the clock formats, keyed by registry kind (plus ``broadcast``)."""

TIME_ONLY_DATE: Final = (1900, 1, 1)
"""The date given to a time-only field (as ``datetime.strptime`` does)."""

_FIELDS: Final = ("year", "month", "day", "hour", "minute", "second")


def _slices(layout: Layout) -> tuple[int, ...]:
    """Per field of ``_FIELDS``, where its two digits start in the byte-reversed hex
    of a field in ``layout`` (-1 when the layout lacks it)."""
    last = len(layout) - 1
    return tuple(2 * (last - layout.index(f)) if f in layout else -1 for f in _FIELDS)


_SLICES: Final = {layout: _slices(layout) for layout in LAYOUTS.values()}


def decode_clock(raw: bytes, layout: Layout) -> datetime:
    """The naive datetime held in ``raw``; ``ValueError`` on bad BCD or an impossible date."""
    if len(raw) != len(layout):
        raise ValueError(f"clock field of {len(raw)} bytes, expected {len(layout)}")
    text = raw[::-1].hex()
    if not text.isdigit():
        raise ValueError(f"not BCD: {raw.hex(' ').upper()}")
    y, mo, d, h, mi, se = _SLICES.get(layout) or _slices(layout)
    if y >= 0:
        year, month, day = 2000 + int(text[y : y + 2]), int(text[mo : mo + 2]), int(text[d : d + 2])
    else:
        year, month, day = TIME_ONLY_DATE
    hour = int(text[h : h + 2]) if h >= 0 else 0
    minute = int(text[mi : mi + 2]) if mi >= 0 else 0
    second = int(text[se : se + 2]) if se >= 0 else 0
    # datetime() itself rejects impossible fields with a clear message.
    return datetime(year, month, day, hour, minute, second)


def encode_clock(when: datetime, layout: Layout) -> bytes:
    """BCD bytes of ``when`` in ``layout``; ``ValueError`` if the year is not 2000-2099."""
    if "year" in layout and not 2000 <= when.year <= 2099:
        raise ValueError(f"year {when.year} cannot be sent (2000-2099)")
    values = {
        "second": when.second,
        "minute": when.minute,
        "hour": when.hour,
        "weekday": when.isoweekday() % 7,
        "day": when.day,
        "month": when.month,
        "year": when.year % 100,
    }
    return bytes(int(str(values[name]), 16) for name in layout)
