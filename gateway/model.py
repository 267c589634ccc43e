"""Values that cross the gateway: readings, their quality, and events.

Times are integers of milliseconds since the Unix epoch, UTC: exact, cheap to
store and compare, and what the time-series sinks are given. Values are
``Decimal`` so that billing registers are never rounded on the way through.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal


class Quality(enum.IntFlag):
    """Quality flags of a reading. ``OK`` (0) means no flag is set.

    A reading is never dropped because it looks wrong: it is flagged, stored
    and forwarded, and billing decides.
    """

    OK = 0
    ESTIMATED = 1 << 0
    BACKFILLED = 1 << 1
    SUSPECT_SPIKE = 1 << 2
    NON_MONOTONIC = 1 << 3
    OUT_OF_RANGE = 1 << 4
    CLOCK_DRIFT = 1 << 5
    ROLLOVER = 1 << 6
    DEVICE_FLAGGED = 1 << 7
    """The source (meter or concentrator) itself marked the value as not good."""
    TARIFF_MISMATCH = 1 << 8
    """The tariff registers of a meter at one instant do not sum to its total."""

    def names(self) -> list[str]:
        """Flag names, lower case, for logs and JSON (``[]`` for OK)."""
        return [f.name.lower() for f in Quality if f and f in self and f.name]


class TimeSource(enum.StrEnum):
    """Which clock stamped a reading's ``ts_ms``."""

    POLL = "poll"
    """Gateway clock at the start of the poll (live reads)."""
    METER = "meter"
    """The meter's own clock (frozen and load-profile records), converted to UTC."""
    CONCENTRATOR = "concentrator"
    """The timestamp a concentrator put in its payload."""


ReadingValues = tuple[str, str, str, str, int, str, int, str, int, int | None]
"""The one shape of a reading on the write path (validation, status, buffer, sinks):
``(meter, key, value, unit, ts_ms, ts_source, received_ms, source, quality,
interval_s)``, ``value`` the exact decimal text. Plain tuples: the concentrator
ingest builds hundreds of thousands per second, and an object per reading would
cost more than storing it. Sources that read meters build :class:`Reading` records
and hand their :meth:`Reading.values` to the write path."""


def decimal_text(value: object) -> str:
    """The exact decimal text of a value, never in exponent notation."""
    text = str(value)
    if "E" in text or "e" in text:
        text = format(value, "f")
    return text


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one quantity of one meter at one instant, as a source builds it
    (typed and exact); it travels the write path as its :meth:`values`."""

    meter: str
    """Meter id: the configured name, or ``proto:address`` for concentrator meters."""
    key: str
    """Canonical quantity key (see :mod:`protocols.quantities`)."""
    value: Decimal
    unit: str
    ts_ms: int
    """When the value was measured, ms since epoch UTC."""
    ts_source: TimeSource
    received_ms: int
    """When the gateway received it, ms since epoch UTC."""
    source: str
    """Bus name for polled meters, MQTT topic for concentrator readings."""
    quality: Quality = Quality.OK
    interval_s: int | None = None
    """For interval (load-profile) data: the length of the interval it closes."""

    def values(self) -> ReadingValues:
        """This reading in the write path's column form."""
        return (
            self.meter,
            self.key,
            decimal_text(self.value),
            self.unit,
            self.ts_ms,
            self.ts_source.value,
            self.received_ms,
            self.source,
            int(self.quality),
            self.interval_s,
        )


def reading_of(values: ReadingValues) -> Reading:
    """A reading from its column form (for tools and tests that want typed values)."""
    meter, key, value, unit, ts_ms, ts_source, received_ms, source, quality, interval_s = values
    return Reading(
        meter,
        key,
        Decimal(value),
        unit,
        ts_ms,
        TimeSource(ts_source),
        received_ms,
        source,
        Quality(quality),
        interval_s,
    )


def rows_of(readings: Sequence[Reading]) -> list[ReadingValues]:
    """Readings in the write path's column form."""
    return [r.values() for r in readings]


class EventKind(enum.StrEnum):
    """What happened. Events are stored and forwarded like readings."""

    METER_ONLINE = "meter_online"
    METER_SUSPECT = "meter_suspect"
    METER_OFFLINE = "meter_offline"
    BUS_FAULT = "bus_fault"
    BUS_RECOVERED = "bus_recovered"
    GAP_OPENED = "gap_opened"
    GAP_FILLED = "gap_filled"
    CLOCK_DRIFT = "clock_drift"
    COUNTER_RESET = "counter_reset"
    NETWORK_GAP = "network_gap"
    BUFFER_CAP_DROPPED = "buffer_cap_dropped"
    SINK_AUTH_FAILED = "sink_auth_failed"
    PAYLOAD_REJECTED = "payload_rejected"
    READINGS_QUARANTINED = "readings_quarantined"
    """Readings of a valid message refused one by one (e.g. a time outside the window)."""
    MESSAGE_REPEATED = "message_repeated"
    """A concentrator message identical to one already stored: dropped, acknowledged."""
    POLL_OVERRUN = "poll_overrun"
    """A poll group cannot keep its interval on its bus (rate-limited)."""
    INGEST_LOGIN_REFUSED = "ingest_login_refused"
    GAP_FILLING = "gap_filling"
    GAP_PARTLY_FILLED = "gap_partly_filled"
    GAP_UNRECOVERABLE = "gap_unrecoverable"
    TIME_SYNC = "time_sync"
    CONFIG_RELOADED = "config_reloaded"
    CONFIG_RELOAD_REJECTED = "config_reload_rejected"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a meter, a bus, a link or the gateway."""

    kind: EventKind
    ts_ms: int
    subject: str
    """Meter id, bus name, concentrator id or sink name the event is about."""
    reason: str = ""
    detail: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)
