"""Backfill of the standard load-profile records against the simulator on a real pty: a
three-phase and a single-phase meter offline for two hours get every channel of every
record back, exactly as the meter recorded it, and nothing for what it did not measure."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

import pytest

from drivers.dlt645 import Dlt645Session
from drivers.transport import SerialTransport
from gateway.health import Gap, meter_time_to_utc_ms
from gateway.model import EventKind, Quality
from gateway.scheduler.readers import Dlt645Reader
from protocols.dlt645 import LOAD_BLOCKS
from protocols.quantities import QUANTITIES
from simulator import Dlt645Bus, SimClock, SimMeter
from simulator.meter.meter import LOAD_PROFILE_BLOCKS
from tests.gateway.scheduler.conftest import addr, energy_config
from tests.gateway.scheduler.test_backfill import meter_local, silent_then_back

CHANNELS = frozenset(
    f.name
    for number, block in enumerate(LOAD_BLOCKS, 1)
    if number in LOAD_PROFILE_BLOCKS
    for f in block
    if f.name in QUANTITIES
)
"""Every channel of the simulator's records that has a quantity key."""
TZ = "Asia/Shanghai"
PHASE_2_3 = frozenset(k for k in CHANNELS if "_l2" in k or "_l3" in k)


@pytest.mark.asyncio
@pytest.mark.parametrize("phases", [3, 1])
async def test_two_hours_offline_are_backfilled_channel_by_channel(phases: int) -> None:
    meter = SimMeter(addr(30 + phases), seed=30 + phases, clock=SimClock(), phases=phases)
    acc = await silent_then_back(meter, 2 * 3600)
    assert len(acc.kinds(EventKind.GAP_FILLED)) == 1
    stored: dict[dt.datetime, dict[str, Decimal]] = defaultdict(dict)
    for r in acc.of(meter.address):
        if r.quality & Quality.BACKFILLED and r.key in CHANNELS:
            assert r.key not in stored[meter_local(acc, r)], "each channel stored once"
            stored[meter_local(acc, r)][r.key] = r.value
    times = sorted(stored)
    # Two hours of 15-minute records, one after the other.
    assert 7 <= len(times) <= 9, times
    assert times == [times[0] + dt.timedelta(minutes=15 * n) for n in range(len(times))]
    for at in times:
        [(recorded_at, values)] = meter.load_profile(at, 1)
        assert recorded_at == at
        expected = {k: v for k, v in values.items() if k in CHANNELS}
        assert stored[at] == expected, at
    keys = set().union(*stored.values())
    if phases == 3:
        assert keys == CHANNELS
    else:
        # Phases 2 and 3 were not measured (FFH in the records): no readings for them.
        assert keys == CHANNELS - PHASE_2_3
        assert not [r for r in acc.of(meter.address) if r.key in PHASE_2_3]


@pytest.mark.asyncio
async def test_a_meter_repeating_one_record_cannot_keep_the_reader_asking() -> None:
    clock = SimClock(speed=0)
    meter = SimMeter(addr(35), seed=35, clock=clock)
    clock.advance(6 * 3600)
    meter.set_fault("profile_stuck")  # every read: the newest record, whatever the start
    [(newest, _)] = meter.load_profile(meter.meter_time() - dt.timedelta(days=1), 1)
    async with Dlt645Bus([meter]) as sim:
        path = await sim.start_pty()
        meter_cfg = energy_config(path, [meter]).buses[0].meters[0]
        reader = Dlt645Reader(
            Dlt645Session(SerialTransport(path, baud=2400, parity="E"), timeout=0.5, retries=0)
        )
        await reader.open()
        try:
            now_ms = int(meter.meter_timestamp() * 1000)
            gap = Gap(meter.address, now_ms - 3 * 3600_000, now_ms)
            slices = [s async for s in reader.records(meter_cfg, gap, TZ)]
        finally:
            await reader.close()
    profile = [s for s in slices if s.kind == "profile"]
    # The newest record once, then the same one again: not newer than asked, the read ends.
    assert len(profile) == 2
    assert {s.ts_ms for s in profile[0].samples} == {meter_time_to_utc_ms(newest, TZ)}
    assert {s.key for s in profile[0].samples} == CHANNELS
    assert profile[1].samples == []
