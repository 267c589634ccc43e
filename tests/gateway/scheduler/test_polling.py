"""The scheduler against the simulator on real ptys: values, timing, faults, recovery."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from drivers.errors import Timeout
from gateway.metrics import Metrics
from gateway.model import EventKind, TimeSource
from protocols.dlt645 import BAD_CHECKSUM
from simulator import Dlt645Bus, SimClock, SimMeter
from tests.gateway.scheduler.conftest import (
    ENERGY,
    MemoryAcceptor,
    addr,
    dlt_config,
    energy_config,
    running,
    until,
)

INSTANT = ["voltage_l1_v", "voltage_l2_v", "voltage_l3_v", "frequency_hz"]
FAST = f"""
[poll_groups.fast]
interval = "1s"
quantities = {ENERGY + INSTANT}
"""


def poll_starts(acc: MemoryAcceptor, meter: str) -> list[int]:
    return sorted({r.ts_ms for r in acc.of(meter, "energy_import_total_kwh")})


@pytest.mark.asyncio
async def test_readings_equal_the_simulator_values_and_use_block_dis() -> None:
    clock = SimClock(speed=0)
    meters = [SimMeter(addr(n), seed=n, clock=clock) for n in (1, 2, 3)]
    async with Dlt645Bus(meters) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = dlt_config(path, [m.address for m in meters], groups=FAST, poll=["fast"])
        begin = int(time.time() * 1000)
        async with running(cfg, acc) as sched:
            await until(lambda: all(len(acc.of(m.address)) >= 9 for m in meters), 5, "readings")
            snap = sched.snapshot()
    for m in meters:
        for key in ENERGY + INSTANT:
            got = acc.of(m.address, key)[0]
            assert got.value == m.value(key), key
            assert got.unit
            assert got.source == "rs485-1"
            assert got.ts_source is TimeSource.POLL
            assert got.ts_ms >= begin
        # Block identifiers were read, not one DI per quantity.
        assert {0x0001FF00, 0x0201FF00, 0x02800002} <= set(m.last_served)
        assert 0x00010000 not in m.last_served
        assert 0x02010100 not in m.last_served
        assert acc.of(m.address, "meter_clock_drift_s")
    assert [e.subject for e in acc.kinds(EventKind.METER_ONLINE)] == [m.address for m in meters]
    bus = snap.buses[0]
    assert (bus.name, bus.protocol, bus.state, bus.link) == ("rs485-1", "dlt645-2007", "ok", path)
    assert [m.state for m in bus.meters] == ["online"] * 3
    assert 0 < bus.utilisation <= 1


@pytest.mark.asyncio
async def test_a_dead_meter_does_not_make_the_others_miss_their_interval() -> None:
    clock = SimClock()
    meters = [SimMeter(addr(n), seed=n, clock=clock) for n in range(1, 11)]
    dead = meters[0]
    dead.set_fault("no_answer")
    async with Dlt645Bus(meters) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, meters, 'offline_after = 2\noffline_backoff_max = "4s"')
        begin = time.time() * 1000
        metrics = Metrics()
        async with running(cfg, acc, metrics) as sched:
            live = meters[1:]
            await until(
                lambda: all(len(poll_starts(acc, m.address)) >= 6 for m in live), 12, "6 polls"
            )
            snap = sched.snapshot()
    for m in live:
        # After the start-up pass (which also reads every clock), each poll
        # keeps the 1 s wall-clock grid: no tick missed, none late.
        starts = [t for t in poll_starts(acc, m.address) if t > begin + 2000]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert len(gaps) >= 2
        assert all(700 <= g <= 1400 for g in gaps), (m.address, gaps)
        assert all(t % 1000 < 400 for t in starts), (m.address, starts)
    assert [e.subject for e in acc.kinds(EventKind.METER_OFFLINE)] == [dead.address]
    assert not acc.kinds(EventKind.BUS_FAULT)
    by_state = {
        st: metrics.registry.get_sample_value("metergw_meters", {"state": st})
        for st in ("online", "offline", "suspect", "unknown")
    }
    assert by_state == {"online": 9, "offline": 1, "suspect": 0, "unknown": 0}
    state = {m.meter_id: m for m in snap.buses[0].meters}
    assert state[dead.address].state == "offline"
    assert state[dead.address].next_poll_ms is not None
    assert dead.address in (state[dead.address].last_error or "")


@pytest.mark.asyncio
async def test_a_dead_bus_is_one_bus_fault_and_recovers() -> None:
    clock = SimClock()
    meters = [SimMeter(addr(n), seed=n, clock=clock) for n in (1, 2, 3)]
    async with Dlt645Bus(meters) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, meters, 'offline_after = 2\noffline_backoff_max = "1s"')
        async with running(cfg, acc) as sched:
            await until(lambda: all(acc.of(m.address) for m in meters), 5, "first readings")
            sim.dead = True
            await until(lambda: bool(acc.kinds(EventKind.BUS_FAULT)), 5, "bus fault")
            assert sched.snapshot().buses[0].state == "fault"
            await until(lambda: sched.buses[0].health.probes >= 2, 5, "probes")
            sim.dead = False
            back = time.time() * 1000
            await until(lambda: bool(acc.kinds(EventKind.BUS_RECOVERED)), 5, "recovery")
            await until(
                lambda: all(any(r.ts_ms > back for r in acc.of(m.address)) for m in meters),
                5,
                "readings after recovery",
            )
            assert sched.snapshot().buses[0].state == "ok"
    assert len(acc.kinds(EventKind.BUS_FAULT)) == 1
    assert len(acc.kinds(EventKind.BUS_RECOVERED)) == 1
    assert not acc.kinds(EventKind.METER_SUSPECT, EventKind.METER_OFFLINE)
    fault = acc.kinds(EventKind.BUS_FAULT)[0]
    assert fault.subject == "rs485-1"
    assert fault.detail["meters_failed"] == 3


@pytest.mark.asyncio
async def test_an_unplugged_adapter_is_reopened(tmp_path: Path) -> None:
    link = tmp_path / "rs485-1"
    clock = SimClock()
    meters = [SimMeter(addr(n), seed=n, clock=clock) for n in (1, 2)]
    sim = Dlt645Bus(meters)
    await sim.start_pty(link)
    acc = MemoryAcceptor()
    cfg = energy_config(str(link), meters)
    async with running(cfg, acc) as sched:
        await until(lambda: all(acc.of(m.address) for m in meters), 5, "first readings")
        await sim.stop()  # unplugged
        await until(lambda: bool(acc.kinds(EventKind.BUS_FAULT)), 5, "link loss noticed")
        sim = Dlt645Bus(meters)  # plugged in again: a new pty behind the same name
        await sim.start_pty(link)
        back = time.time() * 1000
        await until(
            lambda: all(any(r.ts_ms > back for r in acc.of(m.address)) for m in meters),
            8,
            "readings after replug",
        )
        transport = sched.buses[0].reader.session.transport  # type: ignore[attr-defined]
        assert transport.opens >= 2
    await sim.stop()
    fault = acc.kinds(EventKind.BUS_FAULT)[0]
    assert str(link) in fault.reason
    assert acc.kinds(EventKind.BUS_RECOVERED)


@pytest.mark.asyncio
async def test_corrupt_and_wrong_address_replies_are_counted_not_fatal() -> None:
    clock = SimClock()
    meters = [SimMeter(addr(n), seed=n, clock=clock) for n in (1, 2, 3)]
    meters[0].set_fault("bad_checksum")
    meters[1].set_fault("wrong_address")
    metrics = Metrics()

    def discarded(reason: str) -> float:
        value = metrics.registry.get_sample_value(
            "metergw_frames_discarded_total", {"bus": "rs485-1", "reason": reason}
        )
        return value or 0.0

    async with Dlt645Bus(meters) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, meters)
        async with running(cfg, acc, metrics) as sched:
            await until(
                lambda: discarded(BAD_CHECKSUM) >= 2 and discarded("wrong address") >= 2,
                8,
                "discards counted",
            )
            await until(lambda: len(poll_starts(acc, meters[2].address)) >= 3, 5, "good meter")
            meters[0].clear_faults()
            meters[1].clear_faults()
            await until(lambda: all(acc.of(m.address) for m in meters), 8, "all meters answer")
            assert all(w.health.state != "fault" for w in sched.buses)
    polls = metrics.registry.get_sample_value(
        "metergw_polls_total", {"bus": "rs485-1", "result": "timeout"}
    )
    assert polls
    assert polls >= 2


@pytest.mark.asyncio
async def test_read_now_goes_before_scheduled_polls() -> None:
    clock = SimClock(speed=0)
    meters = [SimMeter(addr(n), seed=n, clock=clock) for n in range(1, 9)]
    for m in meters:
        m.set_fault("slow", delay=0.08)  # a pass over 8 meters takes > 0.6 s
    async with Dlt645Bus(meters) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, meters, timeout=0.5)
        async with running(cfg, acc) as sched:
            await until(lambda: all(acc.of(m.address) for m in meters), 8, "first pass")
            first = meters[0].address
            seen = len(poll_starts(acc, first))
            # The next pass has begun: the first meter was just read, seven wait.
            await until(lambda: len(poll_starts(acc, first)) > seen, 3, "next pass")
            last = meters[-1]
            t0 = time.monotonic()
            got = await sched.read_now(last.address, ["voltage_l1_v"])
            took = time.monotonic() - t0
            assert [r.value for r in got] == [last.value("voltage_l1_v")]
            assert got[0] in acc.readings
            assert took < 0.3, took  # the poll in progress, then this one: not the whole pass
            with pytest.raises(KeyError):
                await sched.read_now("no-such-meter", ["voltage_l1_v"])
            with pytest.raises(ValueError, match="identifier for meter_clock_drift_s"):
                await sched.read_now(last.address, ["meter_clock_drift_s"])
            meters[0].set_fault("no_answer")
            with pytest.raises(Timeout, match=meters[0].address):
                await sched.read_now(meters[0].address, ["voltage_l1_v"])
            await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_dlt645_1997_meters_behind_a_tcp_dtu() -> None:
    clock = SimClock(speed=0)
    meters = [SimMeter(addr(n), seed=n, clock=clock, protocol="dlt645-1997") for n in (4, 5)]
    keys = ["energy_import_total_kwh", "energy_import_t1_kwh", "voltage_l1_v"]
    groups = f'[poll_groups.old]\ninterval = "1s"\nquantities = {keys}\n'
    async with Dlt645Bus(meters, variant="dlt645-1997", baud=1200) as sim:
        port = await sim.start_tcp("127.0.0.1", 0)
        acc = MemoryAcceptor()
        cfg = dlt_config(
            f"tcp:127.0.0.1:{port}",
            [m.address for m in meters],
            groups=groups,
            poll=["old"],
            protocol="dlt645-1997",
        )
        async with running(cfg, acc) as sched:
            await until(lambda: all(len(acc.of(m.address)) >= 3 for m in meters), 5, "readings")
            assert sched.snapshot().buses[0].link == f"127.0.0.1:{port}"
    for m in meters:
        total, t1 = m.last_served[0x901F][:2]
        assert acc.of(m.address, "energy_import_total_kwh")[-1].value == total
        assert acc.of(m.address, "energy_import_t1_kwh")[-1].value == t1
        # 1997 voltages are whole volts on the wire.
        assert acc.of(m.address, "voltage_l1_v")[-1].value == m.last_served[0xB611][0]
        assert acc.of(m.address, "meter_clock_drift_s")
