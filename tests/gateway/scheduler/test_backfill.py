"""Backfill against the simulator on real ptys: daily and hourly freezes, load
profile, and a long gap read between the other meters' polls."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from zoneinfo import ZoneInfo

import pytest

from gateway.health import DriftSample, record_time_ms
from gateway.metrics import Metrics
from gateway.model import EventKind, Quality, Reading, TimeSource
from gateway.scheduler import Scheduler
from simulator import Dlt645Bus, SimClock, SimMeter
from tests.gateway.scheduler.conftest import (
    MemoryAcceptor,
    addr,
    energy_config,
    running,
    until,
)

OFFLINE_FAST = 'offline_after = 1\noffline_backoff_max = "1s"'
CLOSED = (EventKind.GAP_FILLED, EventKind.GAP_PARTLY_FILLED, EventKind.GAP_UNRECOVERABLE)


def meter_local(acc: MemoryAcceptor, r: Reading) -> dt.datetime:
    """The meter-local time a backfilled record was stamped with (whole seconds), before
    the gateway took the measured drift nearest to it off (``record_time_ms``)."""
    drifts = [
        DriftSample(d.ts_ms, int(d.value * 1000)) for d in acc.of(r.meter, "meter_clock_drift_s")
    ]
    tz = ZoneInfo("Asia/Shanghai")
    for d in [*drifts, DriftSample(0, 0)]:  # a clock that was set: the stamp stands
        stamp = dt.datetime.fromtimestamp((r.ts_ms + d.drift_ms) / 1000, tz)
        if record_time_ms(r.ts_ms + d.drift_ms, drifts) == r.ts_ms and not stamp.microsecond:
            return stamp.replace(tzinfo=None)
    raise AssertionError(f"{r} was not stamped through a measured drift")


async def silent_then_back(meter: SimMeter, seconds: float) -> MemoryAcceptor:
    """Poll ``meter`` alone, silence it until offline, let ``seconds`` of its time pass,
    bring it back and wait until its gap is filled; what the gateway accepted."""
    async with Dlt645Bus([meter]) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, [meter], OFFLINE_FAST)
        async with running(cfg, acc):
            await until(lambda: bool(acc.of(meter.address)), 5, "first reading")
            meter.set_fault("no_answer")
            await until(lambda: bool(acc.kinds(EventKind.METER_OFFLINE)), 5, "offline")
            meter.clock.advance(seconds)
            meter.clear_faults()
            await until(lambda: bool(acc.kinds(*CLOSED)), 20, "gap closed")
    return acc


@pytest.mark.asyncio
async def test_backfill_after_a_gap_gives_backfilled_meter_stamped_readings() -> None:
    meter = SimMeter(addr(7), seed=7, clock=SimClock())
    acc = await silent_then_back(meter, 2 * 86_400)  # two days pass while it is silent
    frozen = [meter.freeze(n) for n in (1, 2, 3, 4)]
    freezes = {f[0]: f[1] for f in frozen if f is not None}
    opened = acc.kinds(EventKind.GAP_OPENED)
    filled = acc.kinds(EventKind.GAP_FILLED)
    assert len(opened) == len(filled) == 1
    assert acc.events.index(opened[0]) < acc.events.index(filled[0])
    back = [r for r in acc.readings if r.quality & Quality.BACKFILLED]
    assert back
    assert all(r.ts_source is TimeSource.METER for r in back)
    assert filled[0].detail["readings"] == len(back)
    daily: dict[tuple[dt.datetime, str], Reading] = {}
    for r in back:
        local = meter_local(acc, r)
        assert local.minute % 15 == 0
        assert local.second == 0
        if local.hour == 0 and local.minute == 0 and r.key.endswith("_t1_kwh"):
            daily[local, r.key] = r
    # The two midnights inside the gap, with the meter's frozen import and export tariffs.
    assert len(daily) == 4
    for (local, key), reading in daily.items():
        assert reading.value == freezes[local][key]
    assert {key for _, key in daily} == {"energy_import_t1_kwh", "energy_export_t1_kwh"}
    assert acc.kinds(EventKind.CLOCK_DRIFT)
    drift = acc.of(meter.address, "meter_clock_drift_s")[-1].value
    assert 2 * 86_400 - 10 < drift < 2 * 86_400 + 10


@pytest.mark.asyncio
async def test_backfill_reads_hourly_freezes_from_a_meter_without_load_profile() -> None:
    meter = SimMeter(addr(8), seed=8, clock=SimClock(), load_profile=False)
    acc = await silent_then_back(meter, 30 * 3600)  # thirty hours: a midnight, 30 full hours
    hourly = {}
    for n in range(1, 40):
        record = meter.freeze(n, hourly=True)
        assert record is not None
        hourly[record[0]] = record[1]["energy_import_total_kwh"]
    back = [r for r in acc.readings if r.quality & Quality.BACKFILLED]
    totals = {meter_local(acc, r): r for r in back if r.key == "energy_import_total_kwh"}
    # Every full hour of the gap, each once, with the meter's frozen total; no 15-min records.
    assert 29 <= len(totals) <= 31, sorted(totals)
    assert len([r for r in back if r.key == "energy_import_total_kwh"]) == len(totals)
    assert all(t.minute == 0 and t.second == 0 for t in totals)
    for local, reading in totals.items():
        assert reading.value == hourly[local], local
        assert reading.ts_source is TimeSource.METER
    midnights = [t for t in totals if t.hour == 0]
    assert midnights, "the daily freeze's midnight is among them"
    # The midnight's tariff registers come from the daily freeze.
    assert any(r.key == "energy_import_t1_kwh" for r in back)
    # Hourly freezes cannot fill a gap the meter's one-second energy group left: the gap
    # says how many of its intervals were recovered, and that the rest cannot be.
    closed = acc.kinds(*CLOSED)
    assert [e.kind for e in closed] == [EventKind.GAP_PARTLY_FILLED]
    assert closed[0].detail["complete"] is False
    assert closed[0].detail["interval_s"] == 1
    assert closed[0].detail["recovered"] == closed[0].detail["records"] == len(totals)
    assert closed[0].detail["missing"] == int(closed[0].detail["expected"] or 0) - len(totals)
    assert f"{len(totals)} of " in closed[0].reason


@pytest.mark.asyncio
async def test_a_long_gap_is_read_between_the_other_meters_polls() -> None:
    clock = SimClock()
    back = SimMeter(addr(21), seed=21, clock=clock, load_profile=False)
    busy = SimMeter(addr(22), seed=22, clock=clock)
    # 9600 baud with the line's timing: about 80 ms per transaction.
    async with Dlt645Bus([back, busy], baud=9600, emulate_timing=True) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, [back, busy], OFFLINE_FAST, timeout=0.5)
        async with running(cfg, acc):
            await until(lambda: bool(acc.of(busy.address)), 5, "first reading")
            back.set_fault("no_answer")
            await until(lambda: bool(acc.kinds(EventKind.METER_OFFLINE)), 5, "offline")
            clock.advance(48 * 3600)  # two days: ~50 hourly freezes, two reads each
            back.clear_faults()
            await until(lambda: bool(acc.kinds(*CLOSED)), 60, "gap closed")
    opened = acc.kinds(EventKind.GAP_OPENED)[0]
    # Hourly freezes only (no load profile): every hour recovered, the 1 s polls are not.
    filled = acc.kinds(EventKind.GAP_PARTLY_FILLED)[0]
    assert int(filled.detail["records"] or 0) >= 48
    assert filled.ts_ms - opened.ts_ms > 3000, "too short a backfill to tell"
    # While it was read, the other meter kept its one-second interval.
    polls = sorted(
        {r.ts_ms for r in acc.of(busy.address, "energy_import_total_kwh")}
        & set(range(opened.ts_ms - 1500, filled.ts_ms + 1))
    )
    assert len(polls) >= 3
    assert max(b - a for a, b in itertools.pairwise(polls)) < 1800, polls
    # Readings were stored as they were read, not all at the end.
    received = [r.received_ms for r in acc.readings if r.quality & Quality.BACKFILLED]
    assert max(received) - min(received) > 1000


@pytest.mark.asyncio
async def test_a_resumed_meter_backfills_from_its_last_stored_reading() -> None:
    meter = SimMeter(addr(9), seed=9, clock=SimClock())
    async with Dlt645Bus([meter]) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, [meter])
        other = Scheduler(cfg, MemoryAcceptor(), Metrics())
        assert other.resume({meter.address: 1, "a-meter-polled-elsewhere": 1}) == 1
        last_stored = int(time.time() * 1000) - 6 * 3600 * 1000  # down for six hours
        async with running(cfg, acc, last_stored={meter.address: last_stored}):
            await until(lambda: bool(acc.kinds(EventKind.GAP_FILLED)), 20, "gap filled")
    opened = acc.kinds(EventKind.GAP_OPENED)
    assert len(opened) == 1
    assert opened[0].detail["from_ms"] == last_stored
    back = [r for r in acc.readings if r.quality & Quality.BACKFILLED]
    stamps = {r.ts_ms for r in back}
    # Six hours of 15-minute load-profile records, all inside the gap.
    assert 23 <= len(stamps) <= 25, len(stamps)
    assert all(last_stored < ts <= opened[0].ts_ms for ts in stamps)


@pytest.mark.asyncio
async def test_a_short_restart_opens_no_gap() -> None:
    meter = SimMeter(addr(10), seed=10, clock=SimClock())
    async with Dlt645Bus([meter]) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, [meter])
        just_now = int(time.time() * 1000) - 300  # less than the 1 s energy interval
        async with running(cfg, acc, last_stored={meter.address: just_now}):
            key = "energy_import_total_kwh"
            await until(lambda: len(acc.of(meter.address, key)) >= 3, 10, "three polls")
    assert not acc.kinds(EventKind.GAP_OPENED)
