"""Where gaps open: a meter back from an outage, polls read but not stored, or by hand.

Each makes a ledger row (:func:`open_gap`) and the :class:`Backfill` that fills it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.gaps import GapCause, GapLedger, GapRecord
from gateway.health import Gap, meter_gap, needs_backfill
from gateway.model import Reading
from gateway.scheduler.backfill import Backfill
from gateway.scheduler.meters import MeterRun
from gateway.southbound.reader import MeterReader


def _now_ms() -> int:
    return int(time.time() * 1000)


def start_backfill(
    reader: MeterReader,
    meter: MeterRun,
    source: str,
    *,
    last_ok_ms: int | None,
    now_ms: int,
    drift_before_ms: int | None,
    cause: GapCause = GapCause.METER_OFFLINE,
    ledger: GapLedger | None = None,
    readings: Sequence[Reading] = (),
) -> Backfill | None:
    """After a return: the gap to fill, or ``None`` when no interval was missed.

    The gap is kept in the meter's time frame (its records are stamped so) and counted
    in the interval of its load profile, or of its energy poll group when it keeps none.
    """
    if last_ok_ms is None or not needs_backfill(last_ok_ms, now_ms, meter.cumulative_interval()):
        return None
    record = open_gap(
        reader, meter, source, cause, last_ok_ms, now_ms, drift_before_ms=drift_before_ms
    )
    return Backfill(reader, meter, source, record, ledger, energy_across(meter, readings))


ACROSS_KEYS = ("energy_import_total_kwh", "energy_combined_total_kwh", "energy_export_total_kwh")


def energy_across(meter: MeterRun, after: Sequence[Reading]) -> str:
    """What the energy registers read before the gap (``meter.registers``) and at the
    meter's return (``after``) say about it, or "" when they do not bracket it."""
    now = {r.key: r for r in after}
    for key in (*ACROSS_KEYS, *sorted(meter.registers)):
        if key in meter.registers and key in now:
            _, before, unit = meter.registers[key]
            value = now[key].value
            return f"{key} went from {before} to {value} {unit} across it ({value - before} {unit})"
    return ""


def not_stored_backfill(
    reader: MeterReader,
    meter: MeterRun,
    source: str,
    first_ms: int,
    last_ms: int,
    ledger: GapLedger | None = None,
) -> Backfill:
    """Polls from ``first_ms`` to ``last_ms`` were read but could not be stored: the gap
    runs from the meter's newest stored poll (or just before the first lost one)."""
    stored = meter.stored_ms
    start = stored if stored is not None and stored < first_ms else first_ms - 1
    record = open_gap(
        reader, meter, source, GapCause.NOT_STORED, start, last_ms, drift_before_ms=meter.drift_ms
    )
    return Backfill(reader, meter, source, record, ledger)


def open_gap(
    reader: MeterReader,
    meter: MeterRun,
    source: str,
    cause: GapCause,
    start_ms: int,
    end_ms: int,
    *,
    drift_before_ms: int | None,
    gap_id: str | None = None,
) -> GapRecord:
    """A new ledger row for ``meter``'s gap ``(start_ms, end_ms]`` (gateway clock), mapped
    into meter time through the drift measured before and after (``meter.drift_ms``), and
    counted in the interval of the meter's records (its load profile), or of its energy
    poll group when it keeps none. No I/O."""
    in_meter_time = meter_gap(
        Gap(meter.meter_id, start_ms, end_ms), drift_before_ms, meter.drift_ms
    )
    group = meter.cumulative_interval()
    interval = reader.record_interval_s(meter.cfg) or max(1, round(group or 900))
    keys = [k for g in meter.groups if g.cumulative for k in g.keys]
    return GapRecord.opened(
        meter.meter_id,
        cause,
        keys,
        start_ms,
        end_ms,
        interval,
        _now_ms(),
        bus=source,
        meter_span=(in_meter_time.start_ms, in_meter_time.end_ms),
        gap_id=gap_id,
    )
