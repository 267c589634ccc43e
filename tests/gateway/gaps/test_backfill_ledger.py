"""Gaps in the ledger against the simulator on ptys: filled, resumed after a restart,
unrecoverable where the meter keeps no records."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.buffer import Batch, Buffer, BufferError, WriteJob
from gateway.config import Config, parse_config
from gateway.config.northbound import BufferConfig
from gateway.gaps import GapCause, GapRecord, GapState, load_gaps, read_gaps
from gateway.metrics import Metrics
from gateway.model import EventKind, Quality
from gateway.scheduler import Scheduler
from simulator import Dlt645Bus, ModbusServer, SimClock, SimMeter
from tests.gateway.scheduler.conftest import ENERGY_1S, addr, dlt_config, energy_config, until

OFFLINE_FAST = 'offline_after = 1\noffline_backoff_max = "1s"'
TOTAL = "energy_import_total_kwh"
CFG = BufferConfig(commit_max_rows=1000)


@asynccontextmanager
async def polling(
    cfg: Config, buf: Buffer, resume: Sequence[GapRecord] = ()
) -> AsyncIterator[Scheduler]:
    """A scheduler writing to a real buffer for the duration of the block."""
    sched = Scheduler(cfg, buf, Metrics())
    sched.resume_gaps(resume)
    task = asyncio.create_task(sched.run())
    await asyncio.wait_for(sched.started.wait(), 5)
    try:
        yield sched
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def closed(sched: Scheduler) -> list[GapRecord]:
    return [g for g in sched.gaps.gaps.values() if not g.state.active]


async def everything(buf: Buffer) -> Batch:
    return await buf.read("check", 0, 1_000_000)


def on_the_minute(ts_ms: int) -> int:
    """A backfilled record's stamp back on its minute: it was stamped through the meter's
    measured drift (seconds here; see ``record_time_ms``), not on the meter's boundary."""
    return round(ts_ms / 60_000) * 60_000


def event_kinds(batch: Batch) -> list[str]:
    return [e[1] for e in batch.events if e[1].startswith("gap_")]


async def offline(sched: Scheduler, meter: SimMeter) -> None:
    meter.set_fault("no_answer")
    health = sched.buses[0].meters[0].health
    await until(lambda: health.state == "offline", 5, "offline")


@pytest.mark.asyncio
async def test_a_meter_offline_for_two_hours_is_backfilled_and_its_gap_filled(
    tmp_path: Path,
) -> None:
    meter = SimMeter(addr(31), seed=31, clock=SimClock())
    path = str(tmp_path / "b.sqlite")
    async with Dlt645Bus([meter]) as sim, await Buffer.open(path, CFG, Metrics()) as buf:
        cfg = energy_config(await sim.start_pty(), [meter], OFFLINE_FAST)
        async with polling(cfg, buf) as sched:
            await until(lambda: buf.head_seq > 0, 5, "first reading")
            await offline(sched, meter)
            meter.clock.advance(2 * 3600)
            meter.clear_faults()
            await until(lambda: bool(closed(sched)), 20, "gap closed")
        batch = await everything(buf)
    [gap] = read_gaps(path)
    assert gap.state is GapState.FILLED, gap
    assert gap.interval_s == 900
    assert 8 <= gap.expected <= 9
    assert gap.recovered == gap.expected
    assert gap.missing == 0
    assert event_kinds(batch) == ["gap_opened", "gap_filling", "gap_filled"]
    # Every 15-minute record of the gap is stored, flagged backfilled and nothing else,
    # with the meter's own values.
    back = {
        on_the_minute(r[5]): r
        for r in batch.readings
        if r[2] == TOTAL and r[9] & Quality.BACKFILLED
    }
    assert all(r[9] == Quality.BACKFILLED for r in back.values())
    step = 900_000
    boundaries = {
        b * step for b in range(gap.meter_start_ms // step + 1, gap.meter_end_ms // step + 1)
    }
    assert boundaries <= set(back), sorted(boundaries - set(back))
    for ts in boundaries:
        local = meter.meter_time(meter.local_to_sim(meter.meter_time(ts / 1000))).replace(
            second=0, microsecond=0
        )
        [(at, values)] = meter.load_profile(local, 1)
        assert back[ts][3] == str(values[TOTAL]), at


@pytest.mark.asyncio
async def test_a_restart_in_the_middle_of_a_backfill_resumes_it(tmp_path: Path) -> None:
    clock = SimClock()
    meter = SimMeter(addr(32), seed=32, clock=clock)
    path = str(tmp_path / "b.sqlite")
    # 9600 baud with the line's timing: three days of records take seconds to read.
    async with Dlt645Bus([meter], baud=9600, emulate_timing=True) as sim:
        cfg = energy_config(await sim.start_pty(), [meter], OFFLINE_FAST, timeout=0.5)
        async with await Buffer.open(path, CFG, Metrics()) as buf:
            async with polling(cfg, buf) as sched:
                await until(lambda: buf.head_seq > 0, 5, "first reading")
                await offline(sched, meter)
                clock.advance(3 * 86_400)
                meter.clear_faults()

                def halfway() -> bool:
                    return any(
                        g.state is GapState.FILLING and g.recovered >= 40
                        for g in sched.gaps.gaps.values()
                    )

                await until(halfway, 30, "the backfill under way")
            first = await everything(buf)
        [stopped] = read_gaps(path)
        assert stopped.state is GapState.FILLING
        assert 40 <= stopped.recovered < stopped.expected
        assert stopped.todo_from_ms > stopped.meter_start_ms
        # The daemon restarts: the ledger says what is left.
        async with await Buffer.open(path, CFG, Metrics()) as buf:
            resume = await load_gaps(path)
            assert [g.id for g in resume] == [stopped.id]
            async with polling(cfg, buf, resume) as sched:
                await until(lambda: bool(closed(sched)), 60, "gap closed")
            batch = await everything(buf)
    [gap] = read_gaps(path)
    assert gap.id == stopped.id
    assert gap.state is GapState.FILLED, gap
    assert gap.recovered == gap.expected == 288
    assert event_kinds(batch) == ["gap_opened", "gap_filling", "gap_filled"]
    step = 900_000
    stamps = {
        on_the_minute(r[5]) for r in batch.readings if r[2] == TOTAL and r[9] & Quality.BACKFILLED
    }
    boundaries = {
        b * step for b in range(gap.meter_start_ms // step + 1, gap.meter_end_ms // step + 1)
    }
    assert boundaries <= stamps
    # The second run read on from where the first stopped, not from the gap's start.
    seen_first = {r[0] for r in first.readings}
    again = [
        r[5]
        for r in batch.readings
        if r[0] not in seen_first and r[9] & Quality.BACKFILLED and r[5] % 86_400_000 != 57_600_000
    ]
    assert again
    assert min(again) > stopped.todo_from_ms


@pytest.mark.asyncio
async def test_a_modbus_meters_gap_is_unrecoverable_and_says_so(tmp_path: Path) -> None:
    clock = SimClock(speed=0)
    meter = SimMeter("1", seed=1, clock=clock)
    path = str(tmp_path / "b.sqlite")
    async with (
        ModbusServer("sdm630", {1: meter}) as srv,
        await Buffer.open(path, CFG, Metrics()) as buf,
    ):
        port = await srv.start_tcp("127.0.0.1", 0)
        cfg = parse_config(
            f"""
[poll_groups.energy]
interval = "1s"
quantities = ["energy_import_total_kwh", "voltage_l1_v"]

[[buses]]
name = "mb-1"
protocol = "modbus-tcp"
tcp = {{ host = "127.0.0.1", port = {port} }}
timeout = 0.2
retries = 0
{OFFLINE_FAST}

[[buses.meters]]
unit = 1
profile = "sdm630"
poll = ["energy"]
"""
        )
        async with polling(cfg, buf) as sched:
            await until(lambda: buf.head_seq > 0, 5, "first reading")
            await offline(sched, meter)
            gone = time.time()
            await until(lambda: time.time() - gone > 2.5, 5, "a few missed intervals")
            meter.clear_faults()
            await until(lambda: bool(closed(sched)), 20, "gap closed")
        batch = await everything(buf)
    [gap] = read_gaps(path)
    assert gap.state is GapState.UNRECOVERABLE
    assert gap.interval_s == 1
    assert gap.expected >= 2
    assert gap.recovered == 0
    assert gap.missing == gap.expected
    assert event_kinds(batch) == ["gap_opened", "gap_unrecoverable"]
    [event] = [e for e in batch.events if e[1] == EventKind.GAP_UNRECOVERABLE]
    assert (
        f"this meter keeps no interval records: {gap.expected} intervals cannot be recovered"
        in event[4]
    )


@pytest.mark.asyncio
async def test_a_1997_meters_gap_says_what_could_and_could_not_be_recovered(
    tmp_path: Path,
) -> None:
    meter = SimMeter(addr(33), seed=33, clock=SimClock(), protocol="dlt645-1997")
    path = str(tmp_path / "b.sqlite")
    async with (
        Dlt645Bus([meter], "dlt645-1997") as sim,
        await Buffer.open(path, CFG, Metrics()) as buf,
    ):
        link = await sim.start_pty()
        cfg = dlt_config(
            link,
            [meter.address],
            groups=ENERGY_1S,
            poll=["energy"],
            bus_extra=OFFLINE_FAST,
            protocol="dlt645-1997",
            timeout=0.3,
        )
        async with polling(cfg, buf) as sched:
            await until(lambda: buf.head_seq > 0, 5, "first reading")
            await offline(sched, meter)
            gone = time.time()
            await until(lambda: time.time() - gone > 2.5, 5, "a few missed intervals")
            meter.clear_faults()
            await until(lambda: bool(closed(sched)), 20, "gap closed")
        batch = await everything(buf)
    [gap] = read_gaps(path)
    assert gap.state is GapState.UNRECOVERABLE
    [event] = [e for e in batch.events if e[1] == EventKind.GAP_UNRECOVERABLE]
    # What cannot be recovered (every interval), and what can (the energy across the gap,
    # from the registers read before and after it).
    assert f"{gap.expected} intervals cannot be recovered" in event[4]
    assert "energy consumed across it" in event[4]
    registers = {r[5]: Decimal(r[3]) for r in batch.readings if r[2] == TOTAL}
    before, after = registers[gap.start_ms], registers[gap.end_ms]
    assert f"{TOTAL} went from {before} to {after} kWh across it ({after - before} kWh)" in event[4]


class FailingOnce:
    """The buffer, except that the third backfill slice fails to commit (a full disk)."""

    def __init__(self, buf: Buffer) -> None:
        self.buf = buf
        self.slices = 0
        self.healthy = True

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        if job.origin == "backfill" and job.rows:
            self.slices += 1
            if self.slices == 3:
                fut: asyncio.Future[WriteJob] = asyncio.get_running_loop().create_future()
                fut.set_exception(BufferError("buffer test: disk full"))
                return fut
        return self.buf.submit(job)


@pytest.mark.asyncio
async def test_a_slice_that_is_not_stored_is_read_again(tmp_path: Path) -> None:
    meter = SimMeter(addr(34), seed=34, clock=SimClock())
    path = str(tmp_path / "b.sqlite")
    async with Dlt645Bus([meter]) as sim, await Buffer.open(path, CFG, Metrics()) as buf:
        cfg = energy_config(await sim.start_pty(), [meter], OFFLINE_FAST)
        store = FailingOnce(buf)
        sched = Scheduler(cfg, store, Metrics())
        task = asyncio.create_task(sched.run())
        try:
            await until(lambda: buf.head_seq > 0, 5, "first reading")
            await offline(sched, meter)
            meter.clock.advance(12 * 3600)  # 48 records: three load-profile slices and more
            meter.clear_faults()
            await until(lambda: bool(closed(sched)), 30, "gap closed")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        batch = await everything(buf)
    assert store.slices > 3
    [gap] = read_gaps(path)
    assert gap.state is GapState.FILLED, gap
    step = 900_000
    stamps = {
        on_the_minute(r[5]) for r in batch.readings if r[2] == TOTAL and r[9] & Quality.BACKFILLED
    }
    first, last = gap.meter_start_ms // step + 1, gap.meter_end_ms // step + 1
    assert {b * step for b in range(first, last)} <= stamps


class FailingPolls:
    """The buffer, except that nothing commits while ``fail`` is set (a full disk); like
    the buffer, it is unhealthy from a failed commit to the next one that lands."""

    def __init__(self, buf: Buffer) -> None:
        self.buf = buf
        self.fail = False
        self.failed = 0
        self.last_failed = 0
        self.healthy = True

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        fut: asyncio.Future[WriteJob]
        if self.fail:
            if job.origin == "poll":
                self.failed += 1
                self.last_failed = max(self.last_failed, *(r[4] for r in job.rows))
            self.healthy = False
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(BufferError("buffer test: commit failed: disk full"))
            return fut
        fut = self.buf.submit(job)
        fut.add_done_callback(lambda f: setattr(self, "healthy", f.exception() is None))
        return fut


@pytest.mark.asyncio
async def test_polls_that_could_not_be_stored_are_a_gap_in_the_ledger(tmp_path: Path) -> None:
    meter = SimMeter(addr(35), seed=35, clock=SimClock())
    path = str(tmp_path / "b.sqlite")
    async with Dlt645Bus([meter]) as sim, await Buffer.open(path, CFG, Metrics()) as buf:
        cfg = energy_config(await sim.start_pty(), [meter], OFFLINE_FAST)
        store = FailingPolls(buf)
        sched = Scheduler(cfg, store, Metrics())
        task = asyncio.create_task(sched.run())
        try:
            await until(lambda: buf.head_seq > 0, 5, "first reading")
            stored = sched.buses[0].meters[0].stored_ms or 0
            store.fail = True
            await until(lambda: store.failed >= 3, 10, "three polls not stored")
            store.fail = False
            await until(lambda: bool(closed(sched)), 20, "gap closed")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        batch = await everything(buf)
    [gap] = read_gaps(path)
    assert gap.cause is GapCause.NOT_STORED
    # From the newest poll that was stored (one in flight when the disk filled may be it).
    polled = {r[5] for r in batch.readings if r[2] == TOTAL and not r[9] & Quality.BACKFILLED}
    assert gap.start_ms >= stored
    assert gap.start_ms in polled
    assert gap.end_ms == store.last_failed, "one gap for the whole outage"
    assert not gap.state.active
    [opened] = [e for e in batch.events if e[1] == "gap_opened"]
    assert "poll(s) read but not stored: buffer test: commit failed: disk full" in opened[4]
