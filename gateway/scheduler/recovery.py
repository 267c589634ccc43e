"""Meter clock checks and gap backfill, run by the bus task after an answer."""

from __future__ import annotations

import time
from decimal import Decimal

from drivers.errors import DriverError
from gateway.health import Gap, meter_gap, meter_time_to_utc_ms, needs_backfill, record_time_ms
from gateway.logs import get_logger
from gateway.model import Event, EventKind, Quality, Reading, TimeSource
from gateway.scheduler.meters import MeterRun
from gateway.scheduler.readers import MeterReader

log = get_logger("scheduler")


def _now_ms() -> int:
    return int(time.time() * 1000)


async def check_clock(
    reader: MeterReader, meter: MeterRun, source: str, *, interval: float, drift_max: float
) -> tuple[list[Reading], list[Event]]:
    """Read the meter's clock; a ``meter_clock_drift_s`` reading, and an event past the limit."""
    meter.next_clock = time.time() + interval
    try:
        local = await reader.read_clock(meter.cfg)
    except DriverError as exc:
        log.warning("meter_clock_unreadable", meter=meter.meter_id, bus=source, error=str(exc))
        return [], []
    if local is None:
        return [], []
    got_ms = _now_ms()
    # The meter shows whole seconds: on average it was half a second past the one shown.
    drift_ms = meter_time_to_utc_ms(local, meter.tz) + 500 - got_ms
    meter.note_drift(got_ms, drift_ms)
    drift_s = (Decimal(drift_ms) / 1000).quantize(Decimal("0.001"))
    reading = Reading(
        meter.meter_id, "meter_clock_drift_s", drift_s, "s", got_ms, TimeSource.POLL, got_ms, source
    )
    events: list[Event] = []
    over = abs(drift_ms) > drift_max * 1000
    if over and not meter.drift_alarm:
        events.append(
            Event(
                EventKind.CLOCK_DRIFT,
                got_ms,
                meter.meter_id,
                f"meter clock off by {drift_s} s (limit {drift_max:g} s)",
                {"drift_s": float(drift_s), "meter_time": local.isoformat(), "tz": meter.tz},
            )
        )
        log.warning("meter_clock_drift", meter=meter.meter_id, bus=source, drift_s=float(drift_s))
    meter.drift_alarm = over
    return [reading], events


class Backfill:
    """One meter's gap being filled from its records, a slice at a time.

    The bus task runs :meth:`step` between scheduled polls (see
    ``BusWorker._step``), so a meter back from a long outage (hundreds of
    frozen records, two reads each) does not hold its line: the other meters
    keep their intervals. Each slice's readings are accepted as they come; the
    ``GAP_FILLED`` event closes the gap with what was recovered.
    """

    def __init__(
        self, reader: MeterReader, meter: MeterRun, source: str, gap: Gap, in_meter_time: Gap
    ) -> None:
        self.meter = meter
        self.source = source
        self.gap = gap
        self.opened = Event(
            EventKind.GAP_OPENED,
            gap.end_ms,
            meter.meter_id,
            f"no readings for {gap.seconds:.0f} s",
            {"from_ms": gap.start_ms, "to_ms": gap.end_ms},
        )
        self._slices = reader.records(meter.cfg, in_meter_time, meter.tz)
        self._stamps: set[int] = set()
        self._seen: set[tuple[str, int]] = set()
        self._readings = 0

    async def step(self) -> tuple[list[Reading], Event | None]:
        """Read the next slice: its readings, and ``GAP_FILLED`` once the records end."""
        try:
            samples = await anext(self._slices)
        except StopAsyncIteration:
            return [], self._filled("")
        except DriverError as exc:
            return [], self._filled(str(exc) or type(exc).__name__)
        received = _now_ms()
        readings = []
        for s in samples:
            # Meter time (UTC through its time zone) back to ours, through the drift.
            ts_ms = record_time_ms(s.ts_ms, self.meter.drifts) if s.ts_ms is not None else received
            # Frozen records are numbered from the newest: one frozen while the gap is
            # being read shifts the numbers, and the next slice reads a record again.
            if (s.key, ts_ms) in self._seen:
                continue
            self._seen.add((s.key, ts_ms))
            readings.append(
                Reading(
                    self.meter.meter_id,
                    s.key,
                    s.value,
                    s.unit,
                    ts_ms,
                    TimeSource.METER,
                    received,
                    self.source,
                    Quality.BACKFILLED,
                )
            )
        self._stamps.update(r.ts_ms for r in readings)
        self._readings += len(readings)
        return readings, None

    async def close(self) -> None:
        """Stop reading (the bus is stopping); what was read is already accepted."""
        await self._slices.aclose()
        log.info(
            "meter_backfill_abandoned",
            meter=self.meter.meter_id,
            bus=self.source,
            records=len(self._stamps),
        )

    def _filled(self, error: str) -> Event:
        records = len(self._stamps)
        detail: dict[str, str | int | float | bool | None] = {
            "from_ms": self.gap.start_ms,
            "to_ms": self.gap.end_ms,
            "records": records,
            "readings": self._readings,
            "complete": not error,
        }
        if error:
            detail["error"] = error
        reason = f"{records} meter record(s) recovered"
        if error:
            reason = f"backfill failed after {reason}: {error}"
        log.info(
            "meter_gap_backfilled", meter=self.meter.meter_id, bus=self.source, records=records
        )
        return Event(EventKind.GAP_FILLED, _now_ms(), self.meter.meter_id, reason, detail)


def start_backfill(
    reader: MeterReader,
    meter: MeterRun,
    source: str,
    *,
    last_ok_ms: int | None,
    now_ms: int,
    drift_before_ms: int | None,
) -> Backfill | None:
    """After a return: the gap to fill, or ``None`` when no interval was missed."""
    if last_ok_ms is None or not needs_backfill(last_ok_ms, now_ms, meter.cumulative_interval()):
        return None
    gap = Gap(meter.meter_id, last_ok_ms, now_ms)
    return Backfill(reader, meter, source, gap, meter_gap(gap, drift_before_ms, meter.drift_ms))
