"""Meter clock checks and gap backfill, run by the bus task after an answer."""

from __future__ import annotations

import time
from decimal import Decimal

from drivers.errors import DriverError
from gateway.health import Gap, meter_gap, meter_time_to_utc_ms, needs_backfill
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
    drift_ms = meter_time_to_utc_ms(local, meter.tz) - got_ms
    meter.drift_ms = drift_ms
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


async def backfill(
    reader: MeterReader,
    meter: MeterRun,
    source: str,
    *,
    last_ok_ms: int | None,
    now_ms: int,
    drift_before_ms: int | None,
) -> tuple[list[Reading], list[Event]]:
    """After a return: ``GAP_OPENED``, the meter's records for the gap, ``GAP_FILLED``."""
    if last_ok_ms is None or not needs_backfill(last_ok_ms, now_ms, meter.cumulative_interval()):
        return [], []
    gap = Gap(meter.meter_id, last_ok_ms, now_ms)
    events = [
        Event(
            EventKind.GAP_OPENED,
            now_ms,
            meter.meter_id,
            f"no readings for {gap.seconds:.0f} s",
            {"from_ms": gap.start_ms, "to_ms": gap.end_ms},
        )
    ]
    in_meter_time = meter_gap(gap, drift_before_ms, meter.drift_ms)
    complete = True
    error = ""
    try:
        samples = await reader.read_records(meter.cfg, in_meter_time, meter.tz)
    except DriverError as exc:
        samples, complete, error = [], False, str(exc)
    received = _now_ms()
    readings = [
        Reading(
            meter.meter_id,
            s.key,
            s.value,
            s.unit,
            s.ts_ms if s.ts_ms is not None else received,
            TimeSource.METER,
            received,
            source,
            Quality.BACKFILLED,
        )
        for s in samples
    ]
    records = len({r.ts_ms for r in readings})
    detail: dict[str, str | int | float | bool | None] = {
        "from_ms": gap.start_ms,
        "to_ms": gap.end_ms,
        "records": records,
        "readings": len(readings),
        "complete": complete,
    }
    if error:
        detail["error"] = error
    reason = f"{records} meter record(s) recovered" if complete else f"backfill failed: {error}"
    events.append(Event(EventKind.GAP_FILLED, received, meter.meter_id, reason, detail))
    log.info("meter_gap_backfilled", meter=meter.meter_id, bus=source, records=records)
    return readings, events
