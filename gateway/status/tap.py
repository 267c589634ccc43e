"""What the operator sees of the write path: a listener told of every commit.

It does two things:

- remembers, per meter, when its last reading was committed and the last
  value of each quantity (``/status``, ``metergw status``, the demo view);
- records committed events in :class:`RecentEvents`.

Polled meters are bounded by the configuration, so each keeps full detail.
Concentrators are not: one broker can bring tens of thousands of meters, and a
:class:`MeterSeen` with its values for each would cost more memory than the
daemon's whole budget allows and make ``/status`` megabytes long. So each
concentrator (MQTT topic) gets a small :class:`ConcentratorSeen` aggregate,
and only the first ``detail_limit`` concentrator meters get per-meter detail;
the rest are counted in their concentrator's aggregate only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.buffer import Outcome, ReadingValues, WriteJob
from gateway.model import TimeSource
from gateway.status.recent import RecentEvents

_CONCENTRATOR = TimeSource.CONCENTRATOR.value
DETAIL_LIMIT = 200
"""Concentrator meters (the first seen) that keep per-meter detail in the tap."""


@dataclass(slots=True)
class MeterSeen:
    """What the gateway last accepted from one meter."""

    meter: str
    source: str
    last_reading_ms: int = 0
    """Measurement time of the newest committed reading."""
    received_ms: int = 0
    """When the gateway received it."""
    readings: int = 0
    values: dict[str, tuple[str, str, int, int]] = field(default_factory=dict)
    """Quantity key -> (value, unit, quality bits, ts_ms) of its newest reading."""


@dataclass(slots=True)
class ConcentratorSeen:
    """What the gateway accepted from one concentrator (one MQTT topic)."""

    topic: str
    readings: int = 0
    messages: int = 0
    """Committed messages that carried readings (resent duplicates are not counted)."""
    meters_last_message: int = 0
    """Distinct meters in the newest committed message."""
    last_reading_ms: int = 0
    """Measurement time of the newest committed reading."""
    received_ms: int = 0
    """When the gateway received the newest committed message."""


class Tap:
    """What the status API and the live view see of the write path: a commit listener
    (:class:`gateway.writepath.CommitListener`) that keeps the newest values per meter
    and an aggregate per concentrator."""

    def __init__(self, recent: RecentEvents, detail_limit: int = DETAIL_LIMIT) -> None:
        self._recent = recent
        self.meters: dict[str, MeterSeen] = {}
        """Every polled meter, and the first ``detail_limit`` concentrator meters."""
        self.concentrators: dict[str, ConcentratorSeen] = {}
        """Topic -> aggregate of everything committed from it."""
        self.detail_limit = detail_limit
        self.rows_not_detailed = 0
        """Concentrator readings counted only in their concentrator's aggregate."""
        self._detailed = 0
        self.accepted = 0
        """Readings committed since start."""
        self.last_error: str | None = None
        """Why the last commit failed; ``None`` once one succeeds again."""

    @property
    def concentrator_meters_truncated(self) -> bool:
        """Whether some concentrator meters are left out of :attr:`meters`."""
        return self.rows_not_detailed > 0

    def failed(self, error: BaseException) -> None:
        self.last_error = str(error)

    def committed(self, job: WriteJob) -> None:
        self.last_error = None
        events = job.stored_events
        if events:
            self._recent.add_events(events)
        if job.outcome is not Outcome.ACCEPTED or not job.rows:
            return
        self.accepted += len(job.rows)
        if job.mark is not None or job.rows[0][5] == _CONCENTRATOR:
            # One concentrator message, from one topic.
            topic = job.mark.topic if job.mark is not None else job.rows[0][7]
            self._concentrator_message(topic, job.rows)
            return
        meters = self.meters
        for meter, key, value, unit, ts_ms, _, received_ms, source, quality, _ in job.rows:
            seen = meters.get(meter)
            if seen is None:
                seen = meters[meter] = MeterSeen(meter, source)
            _update(seen, key, value, unit, ts_ms, received_ms, source, quality)

    def _concentrator_message(self, topic: str, rows: Sequence[ReadingValues]) -> None:
        conc = self.concentrators.get(topic)
        if conc is None:
            conc = self.concentrators[topic] = ConcentratorSeen(topic)
        conc.messages += 1
        conc.readings += len(rows)
        meters = self.meters
        distinct: set[str] = set()
        newest_ts, newest_received = conc.last_reading_ms, conc.received_ms
        not_detailed = 0
        current: str | None = None
        seen: MeterSeen | None = None
        # The lean column form, (meter, key, value, unit, ts_ms, ts_source, received_ms,
        # source, quality, interval_s). A message lists each meter's rows together, so
        # the meter is looked up once per meter, not once per row.
        for meter, key, value, unit, ts_ms, _, received_ms, source, quality, _ in rows:
            if ts_ms > newest_ts:
                newest_ts = ts_ms
            if received_ms > newest_received:
                newest_received = received_ms
            if meter != current:
                current = meter
                distinct.add(meter)
                seen = meters.get(meter)
                if seen is None and self._detailed < self.detail_limit:
                    seen = meters[meter] = MeterSeen(meter, source)
                    self._detailed += 1
            if seen is None:
                not_detailed += 1
            else:
                _update(seen, key, value, unit, ts_ms, received_ms, source, quality)
        conc.meters_last_message = len(distinct)
        conc.last_reading_ms, conc.received_ms = newest_ts, newest_received
        self.rows_not_detailed += not_detailed


def _update(
    seen: MeterSeen,
    key: str,
    value: str,
    unit: str,
    ts_ms: int,
    received_ms: int,
    source: str,
    quality: int,
) -> None:
    seen.readings += 1
    if received_ms > seen.received_ms:
        seen.received_ms = received_ms
    if ts_ms >= seen.last_reading_ms:
        seen.last_reading_ms = ts_ms
        seen.source = source
    current = seen.values.get(key)
    if current is None or ts_ms >= current[3]:
        seen.values[key] = (value, unit, int(quality), ts_ms)
