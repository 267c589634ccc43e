"""Meter and bus health: state machines, bus-fault detection, gap and backfill planning."""

from gateway.health.backfill import (
    DriftSample,
    Gap,
    freezes_to_scan,
    meter_gap,
    meter_time_to_utc_ms,
    needs_backfill,
    record_time_ms,
    utc_ms_to_meter_time,
)
from gateway.health.bus import BusHealth
from gateway.health.meter import MeterHealth, MeterState, Outcome
from gateway.health.probe import ProbeBudget

__all__ = [
    "BusHealth",
    "DriftSample",
    "Gap",
    "MeterHealth",
    "MeterState",
    "Outcome",
    "ProbeBudget",
    "freezes_to_scan",
    "meter_gap",
    "meter_time_to_utc_ms",
    "needs_backfill",
    "record_time_ms",
    "utc_ms_to_meter_time",
]
