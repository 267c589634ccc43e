"""Meter clock checks and gap backfill, run by the bus task after an answer.

The backfill itself (a gap of the ledger filled a slice at a time) lives in
:mod:`gateway.scheduler.backfill`, where gaps open in :mod:`gateway.scheduler.gapstart`;
their names are re-exported here.
"""

from __future__ import annotations

import time
from decimal import Decimal

from drivers.errors import DriverError
from gateway.gaps import gap_event
from gateway.health import meter_time_to_utc_ms
from gateway.logs import get_logger
from gateway.model import Event, EventKind, Reading, TimeSource
from gateway.scheduler.backfill import Backfill
from gateway.scheduler.gapstart import not_stored_backfill, open_gap, start_backfill
from gateway.scheduler.meters import MeterRun
from gateway.southbound.reader import MeterReader

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


__all__ = [
    "Backfill",
    "check_clock",
    "gap_event",
    "not_stored_backfill",
    "open_gap",
    "start_backfill",
]
