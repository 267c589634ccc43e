"""The acceptor in front of the buffer that watches what gets accepted.

It does three things for the operator and for shutdown:

- remembers, per meter, when its last reading was committed and the last
  value of each quantity (``/status``, ``metergw status``, the demo view);
- records committed events in :class:`RecentEvents`;
- shields each commit from the caller's cancellation and keeps track of
  commits in flight, so that on SIGTERM polling and ingest can be cancelled at
  once while what they already handed over still commits (``drain``).

Polled meters are bounded by the configuration, so each keeps full detail.
Concentrators are not: one broker can bring tens of thousands of meters, and a
:class:`MeterSeen` with its values for each would cost more memory than the
daemon's whole budget allows and make ``/status`` megabytes long. So each
concentrator (MQTT topic) gets a small :class:`ConcentratorSeen` aggregate,
and only the first ``detail_limit`` concentrator meters get per-meter detail;
the rest are counted in their concentrator's aggregate only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from gateway.buffer import Buffer, Outcome, ReadingValues, WriteJob
from gateway.model import Event, Reading
from gateway.status.recent import RecentEvents

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
    values: dict[str, tuple[Decimal | str, str, int, int]] = field(default_factory=dict)
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
    """The buffer as sources see it: ``accept`` and ``submit``, watched as they commit.

    Polled readings arrive through ``accept`` (behind the validator);
    concentrator ingest uses ``submit`` directly, to store a message's
    sequence mark in the same transaction as its readings.
    """

    def __init__(
        self, inner: Buffer, recent: RecentEvents, detail_limit: int = DETAIL_LIMIT
    ) -> None:
        self._inner = inner
        self._recent = recent
        self._inflight: set[asyncio.Future[WriteJob]] = set()
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
    def healthy(self) -> bool:
        """Whether the buffer is committing (see :class:`~gateway.buffer.JobStore`)."""
        return self._inner.healthy

    @property
    def concentrator_meters_truncated(self) -> bool:
        """Whether some concentrator meters are left out of :attr:`meters`."""
        return self.rows_not_detailed > 0

    async def accept(self, readings: Sequence[Reading], events: Sequence[Event] = ()) -> None:
        """Store durably, then return; a cancelled caller does not cancel the commit."""
        await asyncio.shield(self.submit(WriteJob(readings=readings, events=events)))

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        """Queue ``job`` for the next group commit (see :meth:`Buffer.submit`)."""
        fut = self._inner.submit(job)
        self._inflight.add(fut)
        fut.add_done_callback(self._committed)
        return fut

    def _committed(self, fut: asyncio.Future[WriteJob]) -> None:
        self._inflight.discard(fut)
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.last_error = str(exc)
            return
        self.last_error = None
        job = fut.result()
        events = job.stored_events
        if events:
            self._recent.add_events(events)
        if job.outcome is not Outcome.ACCEPTED:
            return
        self.accepted += len(job.readings) + len(job.rows)
        meters = self.meters
        for r in job.readings:
            seen = meters.get(r.meter)
            if seen is None:
                seen = meters[r.meter] = MeterSeen(r.meter, r.source)
            _update(seen, r.key, r.value, r.unit, r.ts_ms, r.received_ms, r.source, r.quality)
        if job.rows:
            # One job is one concentrator message, from one topic.
            topic = job.mark.topic if job.mark is not None else job.rows[0][7]
            self._concentrator_message(topic, job.rows)

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

    @property
    def in_flight(self) -> int:
        """Commits handed to the buffer that have not finished."""
        return len(self._inflight)

    async def drain(self) -> None:
        """Wait until every commit in flight has finished (bound it with ``asyncio.timeout``)."""
        while self._inflight:
            await asyncio.wait(set(self._inflight))


def _update(
    seen: MeterSeen,
    key: str,
    value: Decimal | str,
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
