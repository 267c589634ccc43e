"""Opt-in time sync on a pty against the simulator: broadcast time (0x08) only when
enabled, at most once per interval per bus, clocks back within bounds."""

from __future__ import annotations

import datetime as dt
import itertools
import time

import pytest

from gateway.config import ConfigError, parse_config
from gateway.model import EventKind
from simulator import Dlt645Bus, SimClock, SimMeter
from tests.gateway.scheduler.conftest import MemoryAcceptor, addr, energy_config, running, until

BROADCAST = 0x08
CHECK_EVERY_POLL = 'clock_check_interval = "1s"'
SYNC_ON = CHECK_EVERY_POLL + '\n[buses.time_sync]\nenabled = true\nthreshold = "5s"\n'


def fast_meter(n: int, clock: SimClock, seconds: float = 60.0) -> SimMeter:
    """A meter whose clock runs ``seconds`` ahead (no drift rate: it stays there)."""
    meter = SimMeter(addr(n), seed=n, clock=clock, drift_ppm=0.0)
    ahead = dt.datetime.fromtimestamp(clock.timestamp() + seconds, meter.tz)
    meter.set_clock(ahead.replace(tzinfo=None))
    return meter


def off_by(meter: SimMeter) -> float:
    return meter.meter_timestamp() - meter.clock.timestamp()


def drifts(acc: MemoryAcceptor, meter: SimMeter) -> list[float]:
    return [float(r.value) for r in acc.of(meter.address, "meter_clock_drift_s")]


@pytest.mark.asyncio
async def test_off_by_default_no_broadcast_on_the_wire() -> None:
    meter = fast_meter(41, SimClock())
    async with Dlt645Bus([meter]) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, [meter], CHECK_EVERY_POLL)
        assert cfg.buses[0].time_sync.enabled is False
        async with running(cfg, acc):
            await until(lambda: len(drifts(acc, meter)) >= 3, 10, "three clock reads")
    assert sim.functions_seen[0x11] > 0  # reads went out ...
    assert sim.functions_seen[BROADCAST] == 0  # ... and no broadcast time
    assert sim.time_broadcasts == []
    assert not acc.kinds(EventKind.TIME_SYNC)
    assert len(acc.kinds(EventKind.CLOCK_DRIFT)) == 1  # the drift is told, once
    assert all(d > 55 for d in drifts(acc, meter))
    assert off_by(meter) > 59


@pytest.mark.asyncio
async def test_on_one_broadcast_sets_every_clock_of_the_line() -> None:
    clock = SimClock()
    fast, slow = fast_meter(42, clock, 60.0), fast_meter(43, clock, -30.0)
    async with Dlt645Bus([fast, slow]) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, [fast, slow], SYNC_ON)
        async with running(cfg, acc):
            await until(lambda: bool(acc.kinds(EventKind.TIME_SYNC)), 10, "a time sync")
            synced = acc.kinds(EventKind.TIME_SYNC)[0]
            # Both meters' clocks are read again after it, and are right.
            for m in (fast, slow):
                n = len(drifts(acc, m))
                await until(lambda m=m, n=n: len(drifts(acc, m)) >= n + 1, 10, "another clock read")
    assert sim.functions_seen[BROADCAST] == 1  # once per interval (an hour by default)
    assert len(acc.kinds(EventKind.TIME_SYNC)) == 1
    first = synced.subject
    assert first in (fast.address, slow.address)
    before = synced.detail["before_s"]
    assert isinstance(before, float)
    assert abs(before - (60.0 if first == fast.address else -30.0)) < 2
    after = synced.detail["after_s"]
    assert isinstance(after, float)
    assert abs(after) <= 5
    assert synced.detail["confirmed"] is True
    assert synced.detail["bus"] == "rs485-1"
    for m in (fast, slow):
        assert abs(off_by(m)) < 1.5, m.address  # within the broadcast's second
        assert abs(drifts(acc, m)[-1]) <= 2


@pytest.mark.asyncio
async def test_at_most_one_broadcast_per_interval_on_a_meter_that_does_not_take_it() -> None:
    meter = SimMeter(addr(44), seed=44, clock=SimClock(), drift_ppm=0.0)
    meter.set_fault("clock_drift", seconds=120)  # its clock stays off whatever is sent
    extra = SYNC_ON + 'min_interval = "1500ms"\n'
    async with Dlt645Bus([meter]) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, [meter], extra)
        async with running(cfg, acc):
            await until(lambda: len(acc.kinds(EventKind.TIME_SYNC)) >= 3, 15, "three syncs")
            reads = len(drifts(acc, meter))
    syncs = acc.kinds(EventKind.TIME_SYNC)
    assert all(e.detail["confirmed"] is False for e in syncs)
    # Clock read at every poll (about one a second), broadcast no more than every 1.5 s.
    assert reads > len(syncs)
    stamps = [e.ts_ms for e in syncs]
    assert all(b - a >= 1400 for a, b in itertools.pairwise(stamps)), stamps
    assert sim.functions_seen[BROADCAST] >= len(syncs)


def test_time_sync_config() -> None:
    base = """
[[buses]]
name = "b"
protocol = "{protocol}"
serial = {{ port = "/dev/null" }}
{extra}
[[buses.meters]]
{meter}
"""
    dlt = {"protocol": "dlt645-2007", "meter": 'address = "000000000001"'}
    on = '[buses.time_sync]\nenabled = true\nthreshold = "10s"\nmin_interval = "30m"\n'
    cfg = parse_config(base.format(extra=on, **dlt))
    sync = cfg.buses[0].time_sync
    assert (sync.enabled, sync.threshold, sync.min_interval) == (True, 10.0, 1800.0)
    assert parse_config(base.format(extra="", **dlt)).buses[0].time_sync.enabled is False
    modbus = {"protocol": "modbus-rtu", "meter": 'unit = 1\nprofile = "sdm630"'}
    with pytest.raises(ConfigError, match="only DL/T 645 meters take a broadcast time"):
        parse_config(base.format(extra=on, **modbus))
    with pytest.raises(ConfigError, match="threshold"):
        parse_config(base.format(extra=on.replace('"10s"', '"500ms"'), **dlt))


@pytest.mark.asyncio
async def test_a_meter_back_from_a_gap_is_synced_only_after_its_records_are_read() -> None:
    meter = SimMeter(addr(45), seed=45, clock=SimClock(), drift_ppm=0.0)
    extra = 'offline_after = 1\noffline_backoff_max = "1s"\n' + SYNC_ON
    async with Dlt645Bus([meter]) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, [meter], extra)
        async with running(cfg, acc):
            await until(lambda: bool(acc.of(meter.address)), 5, "first reading")
            meter.set_fault("no_answer")
            await until(lambda: bool(acc.kinds(EventKind.METER_OFFLINE)), 5, "offline")
            meter.clock.advance(3 * 3600)  # its clock runs three hours on while silent
            meter.clear_faults()
            await until(lambda: bool(acc.kinds(EventKind.TIME_SYNC)), 20, "a time sync")
    kinds = [e.kind for e in acc.events]
    assert kinds.index(EventKind.GAP_FILLED) < kinds.index(EventKind.TIME_SYNC)
    assert sim.functions_seen[BROADCAST] == 1
    synced = acc.kinds(EventKind.TIME_SYNC)[0]
    assert synced.detail["confirmed"] is True
    # Set to the gateway's clock (the simulation's ran three hours ahead of it).
    assert abs(meter.meter_timestamp() - time.time()) < 1.5
