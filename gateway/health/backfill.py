"""Gaps and what to read to fill them, in meter time and UTC.

A gap is the span between a meter's last good poll and its return. Meter
records (daily and hourly freezes, load profile) carry the meter's local time, so the
gap is mapped into meter time with the clock drift measured before and after
it (:func:`meter_gap`): records are matched even when the meter's clock is off.
A record's time is then taken back to the gateway's clock with the drift
measured nearest to it (:func:`record_time_ms`).
"""

from __future__ import annotations

import datetime
import math
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass

MAX_DAILY_RECORDS = 62
"""DL/T 645-2007 meters keep the last 62 daily freezes."""
MAX_HOURLY_RECORDS = 254
"""... and the last 254 hourly (full-hour) freezes."""


@dataclass(frozen=True, slots=True)
class Gap:
    """A span without readings, ms UTC, start exclusive, end inclusive."""

    meter_id: str
    start_ms: int
    end_ms: int

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000.0

    def contains(self, ts_ms: int) -> bool:
        """Whether ``ts_ms`` falls in the gap."""
        return self.start_ms < ts_ms <= self.end_ms


def meter_gap(gap: Gap, drift_before_ms: int | None, drift_after_ms: int | None) -> Gap:
    """``gap`` (gateway clock) as the meter's clock saw it.

    Drift is meter clock minus gateway clock; an unknown drift counts as the
    other one, or zero.
    """
    after = drift_after_ms if drift_after_ms is not None else (drift_before_ms or 0)
    before = drift_before_ms if drift_before_ms is not None else after
    return Gap(gap.meter_id, gap.start_ms + before, gap.end_ms + after)


def needs_backfill(
    last_ok_ms: int | None, now_ms: int, cumulative_interval_s: float | None
) -> bool:
    """True when the meter missed at least one interval of a cumulative (energy) group."""
    if last_ok_ms is None or cumulative_interval_s is None:
        return False
    return now_ms - last_ok_ms > cumulative_interval_s * 1000.0


def freezes_to_scan(gap: Gap, hourly: bool = False) -> int:
    """How many daily (or hourly) freezes, newest first, can fall inside ``gap``."""
    span, top = (3_600_000, MAX_HOURLY_RECORDS) if hourly else (86_400_000, MAX_DAILY_RECORDS)
    n = math.ceil(max(gap.end_ms - gap.start_ms, 0) / span) + 1
    return max(1, min(n, top))


def meter_time_to_utc_ms(local: datetime.datetime, tz: str) -> int:
    """A naive meter-local time -> ms since epoch UTC, in the meter's time zone."""
    aware = local.replace(tzinfo=zoneinfo.ZoneInfo(tz))
    return int(aware.timestamp() * 1000)


def utc_ms_to_meter_time(ts_ms: int, tz: str) -> datetime.datetime:
    """ms since epoch UTC -> naive meter-local time in ``tz``."""
    aware = datetime.datetime.fromtimestamp(ts_ms / 1000, tz=zoneinfo.ZoneInfo(tz))
    return aware.replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class DriftSample:
    """One reading of a meter's clock: when (gateway clock, ms UTC) and how far off."""

    at_ms: int
    drift_ms: int
    """Meter clock minus gateway clock."""

    @property
    def meter_ms(self) -> int:
        """What the meter's clock said at the time (ms UTC through its time zone)."""
        return self.at_ms + self.drift_ms


MAX_DRIFT_CORRECTION_MS = 3_600_000
"""A clock off by more than an hour did not drift there: it was set or reset at a moment
nobody knows, so its records cannot be placed by it (a ``clock_drift`` event says so)."""


def record_time_ms(meter_ms: int, drifts: Sequence[DriftSample]) -> int:
    """A record's time on the gateway clock: ``meter_ms`` is the meter's stamp converted
    to UTC through its time zone (:func:`meter_time_to_utc_ms`); the drift measured
    nearest to it (in the meter's own time) is taken off. A record stamped 12:00:00 by
    a meter 1.36 s fast is stored at 11:59:58.640. Without a measurement, or when the
    nearest one is past :data:`MAX_DRIFT_CORRECTION_MS`, the stamp stands as it is."""
    if not drifts:
        return meter_ms
    nearest = min(drifts, key=lambda d: abs(meter_ms - d.meter_ms))
    if abs(nearest.drift_ms) > MAX_DRIFT_CORRECTION_MS:
        return meter_ms
    return meter_ms - nearest.drift_ms
