"""Backfilled records stamped through the measured clock drift, and flagged
``backfilled`` only (the validator in the path)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from gateway.health import DriftSample, record_time_ms
from gateway.metrics import Metrics
from gateway.model import EventKind, Quality, TimeSource
from gateway.scheduler import Scheduler
from gateway.validate import Validator
from gateway.writepath import WritePath
from simulator import Dlt645Bus, SimClock, SimMeter
from tests.gateway.scheduler.conftest import MemoryAcceptor, addr, energy_config, until

TZ = ZoneInfo("Asia/Shanghai")


def test_a_record_is_stamped_through_the_drift_nearest_to_it() -> None:
    noon = int(dt.datetime(2026, 11, 23, 12, 0, tzinfo=TZ).timestamp() * 1000)
    # A meter 1.36 s fast: its 12:00:00 was 11:59:58.640 on our clock.
    assert record_time_ms(noon, [DriftSample(noon, 1360)]) == noon - 1360
    hour = 3_600_000
    drifts = [DriftSample(noon - 5 * hour, 1000), DriftSample(noon + hour, 3000)]
    assert record_time_ms(noon - 4 * hour, drifts) == noon - 4 * hour - 1000
    assert record_time_ms(noon, drifts) == noon - 3000  # nearer the later reading
    assert record_time_ms(noon - 2 * hour, drifts) == noon - 2 * hour - 1000  # a tie: earlier
    assert record_time_ms(noon, []) == noon  # never measured: as stamped
    # Nearest in the meter's own time: a reading 2 h before, of a clock 50 min fast.
    fast = 50 * 60_000
    far = [DriftSample(noon - 2 * hour, fast), DriftSample(noon - 3 * hour + fast + 1, 0)]
    assert record_time_ms(noon - hour, far) == noon - hour - fast
    # An hour is the most a clock is trusted to have drifted; past it, it was set.
    assert record_time_ms(noon, [DriftSample(noon - hour, hour)]) == noon - hour
    assert record_time_ms(noon, [DriftSample(noon - hour, hour + 1)]) == noon


@pytest.mark.asyncio
async def test_backfilled_records_are_stamped_through_the_measured_drift() -> None:
    meter = SimMeter(addr(31), seed=31, clock=SimClock(), drift_ppm=0.0)
    meter.set_fault("clock_drift", seconds=95.36)  # well off, and not whole seconds
    true_offset_ms = (meter.meter_timestamp() - meter.clock.timestamp()) * 1000
    store = MemoryAcceptor()
    writes = WritePath(store, Validator())  # the real checks in the path (max skew 300 s)
    async with Dlt645Bus([meter]) as sim:
        path = await sim.start_pty()
        cfg = energy_config(path, [meter])
        sched = Scheduler(cfg, writes, Metrics())
        down_since = int(time.time() * 1000) - 2 * 3600 * 1000  # down for two hours
        sched.resume({meter.address: down_since})
        task = asyncio.create_task(sched.run())
        try:
            await until(lambda: bool(store.kinds(EventKind.GAP_FILLED)), 20, "gap filled")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    drift_ms = int(store.of(meter.address, "meter_clock_drift_s")[0].value * 1000)
    # The clock is read to the second (taken as its middle): within half a second or so.
    assert abs(drift_ms - true_offset_ms) < 800, (drift_ms, true_offset_ms)
    back = [r for r in store.readings if r.ts_source is TimeSource.METER]
    assert len({r.ts_ms for r in back}) >= 7  # two hours of 15-minute records
    for r in back:
        assert r.quality == Quality.BACKFILLED  # and nothing else: no clock_drift
        meter_time = dt.datetime.fromtimestamp((r.ts_ms + drift_ms) / 1000, TZ)
        assert (meter_time.minute % 15, meter_time.second, meter_time.microsecond) == (0, 0, 0)
        assert down_since < r.ts_ms
