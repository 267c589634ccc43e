"""The acceptor in front of the buffer that watches what gets accepted.

It does three things for the operator and for shutdown:

- remembers, per meter, when its last reading was committed and the last
  value of each quantity (``/status``, ``metergw status``, the demo view);
- records committed events in :class:`RecentEvents`;
- shields each commit from the caller's cancellation and keeps track of
  commits in flight, so that on SIGTERM polling and ingest can be cancelled at
  once while what they already handed over still commits (``drain``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from gateway.buffer import Buffer, Outcome, WriteJob
from gateway.model import Event, Reading
from gateway.status.recent import RecentEvents


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


class Tap:
    """The buffer as sources see it: ``accept`` and ``submit``, watched as they commit.

    Polled readings arrive through ``accept`` (behind the validator);
    concentrator ingest uses ``submit`` directly, to store a message's
    sequence mark in the same transaction as its readings.
    """

    def __init__(self, inner: Buffer, recent: RecentEvents) -> None:
        self._inner = inner
        self._recent = recent
        self._inflight: set[asyncio.Future[WriteJob]] = set()
        self.meters: dict[str, MeterSeen] = {}
        self.accepted = 0
        """Readings committed since start."""
        self.last_error: str | None = None
        """Why the last commit failed; ``None`` once one succeeds again."""

    @property
    def healthy(self) -> bool:
        """Whether the buffer is committing (see :class:`~gateway.buffer.JobStore`)."""
        return self._inner.healthy

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
        events = [*job.events, *job.generated]
        if events:
            self._recent.add_events(events)
        if job.outcome is not Outcome.ACCEPTED:
            return
        self.accepted += len(job.readings) + len(job.rows)
        for r in job.readings:
            self._seen(r.meter, r.key, r.value, r.unit, r.ts_ms, r.received_ms, r.source, r.quality)
        # The concentrator ingest's lean path: rows in column form,
        # (meter, key, value, unit, ts_ms, ts_source, received_ms, source, quality, interval_s).
        for meter, key, value, unit, ts_ms, _, received_ms, source, quality, _ in job.rows:
            self._seen(meter, key, value, unit, ts_ms, received_ms, source, quality)

    def _seen(
        self,
        meter: str,
        key: str,
        value: Decimal | str,
        unit: str,
        ts_ms: int,
        received_ms: int,
        source: str,
        quality: int,
    ) -> None:
        seen = self.meters.get(meter)
        if seen is None:
            seen = self.meters[meter] = MeterSeen(meter, source)
        seen.readings += 1
        if received_ms > seen.received_ms:
            seen.received_ms = received_ms
        if ts_ms >= seen.last_reading_ms:
            seen.last_reading_ms = ts_ms
            seen.source = source
        current = seen.values.get(key)
        if current is None or ts_ms >= current[3]:
            seen.values[key] = (value, unit, int(quality), ts_ms)

    @property
    def in_flight(self) -> int:
        """Commits handed to the buffer that have not finished."""
        return len(self._inflight)

    async def drain(self) -> None:
        """Wait until every commit in flight has finished (bound it with ``asyncio.timeout``)."""
        while self._inflight:
            await asyncio.wait(set(self._inflight))
