"""A reload that restarts a bus while one of its meters' gaps is being backfilled: the new
bus worker takes the gap up from the ledger (as a gateway restart does) once the old
worker's writes committed, and the gap is filled once, every record stored once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from gateway.buffer import Buffer, WriteJob
from gateway.config import load_config
from gateway.config.northbound import BufferConfig
from gateway.daemon import Daemon
from gateway.gaps import GapRecord, GapState, read_gaps
from gateway.metrics import Metrics
from gateway.model import Quality
from gateway.scheduler import Scheduler
from simulator import Dlt645Bus, SimClock, SimMeter
from tests.gateway.scheduler.conftest import ENERGY_1S, addr, energy_config

OFFLINE_FAST = 'offline_after = 1\noffline_backoff_max = "1s"'

pytestmark = pytest.mark.timeout(120)

CONFIG = """
[gateway]
name = "reload-gap"
timezone = "Asia/Shanghai"
state_dir = "{state}"
shutdown_timeout = "5s"
[http]
enabled = false
[sinks.local]
enabled = false
{groups}
[[buses]]
name = "rs485-1"
protocol = "dlt645-2007"
serial = {{ port = "{pty}", baud = 9600 }}
timeout = {timeout}
retries = 0
offline_after = 1
offline_backoff_max = "1s"
[[buses.meters]]
address = "{address}"
poll = ["energy"]
"""


async def until(pred: object, what: str, within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not pred():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_a_bus_restarted_by_a_reload_takes_its_filling_gap_up_again(
    tmp_path: Path,
) -> None:
    clock = SimClock()
    meter = SimMeter(addr(41), seed=41, clock=clock)
    state = tmp_path / "state"
    path = tmp_path / "gw.toml"
    # 9600 baud with the line's timing: three days of records take seconds to read.
    async with Dlt645Bus([meter], baud=9600, emulate_timing=True) as sim:
        pty = await sim.start_pty()

        def write(timeout: float) -> None:
            text = CONFIG.format(
                state=state, groups=ENERGY_1S, pty=pty, timeout=timeout, address=meter.address
            )
            path.write_text(text.replace("'", '"'), encoding="utf-8")

        write(0.5)
        daemon = Daemon(load_config(path), config_path=str(path))
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.started.wait(), 10)
            sched = daemon.status.scheduler
            ledger = daemon.status.gaps
            assert sched is not None
            assert ledger is not None
            old = sched.buses[0]
            await until(lambda: old.meters[0].stored_ms is not None, "first reading")
            meter.set_fault("no_answer")
            await until(lambda: old.meters[0].health.state == "offline", "offline")
            clock.advance(3 * 86_400)
            meter.clear_faults()

            def filling() -> GapRecord | None:
                gaps = ledger.gaps.values()  # type: ignore[attr-defined]
                return next(
                    (g for g in gaps if g.state is GapState.FILLING and g.recovered >= 20), None
                )

            await until(lambda: filling() is not None, "the backfill under way")
            gap = filling()
            assert gap is not None
            old_task = sched._tasks["rs485-1"]

            write(0.6)  # the bus changed: the reload restarts it
            daemon.request_reload()
            await until(lambda: sched._tasks.get("rs485-1") not in (None, old_task), "restart")
            new = next(w for w in sched.buses if w.name == "rs485-1")
            assert new is not old
            assert new.cfg.timeout == 0.6
            assert old_task.done()
            # The old worker's writes committed before the new one started, and the new
            # worker holds the gap from the ledger's newest row (not orphaned).
            assert old.store.in_flight == 0  # type: ignore[attr-defined]
            resumed = [j for j in new._backfills if j.record.id == gap.id]
            assert len(resumed) == 1
            row = ledger.gaps[gap.id]  # type: ignore[attr-defined]
            assert resumed[0].record.todo_from_ms == row.todo_from_ms >= gap.todo_from_ms

            def closed() -> bool:
                return not ledger.gaps[gap.id].state.active  # type: ignore[attr-defined]

            await until(closed, "the gap filled", within=60)
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 20)
    buffer = daemon.buffer_path
    [done] = [g for g in read_gaps(buffer) if g.id == gap.id]
    assert done.state is GapState.FILLED, done
    assert done.recovered == done.expected == 288
    with sqlite3.connect(buffer) as conn:
        events = [
            kind
            for kind, detail in conn.execute("SELECT kind, detail FROM events ORDER BY seq")
            if json.loads(detail).get("gap") == gap.id
        ]
        stamps = [
            ts
            for (ts,) in conn.execute(
                "SELECT ts_ms FROM readings WHERE key = 'energy_import_total_kwh' "
                "AND quality & ? AND meter = ?",
                (int(Quality.BACKFILLED), meter.address),
            )
        ]
    # One gap, one story: the restart neither reopened it nor started it over.
    assert events == ["gap_opened", "gap_filling", "gap_filled"]
    # Every load-profile record stored once: the new worker read on from the last committed
    # slice. (A resumed backfill reads the day's frozen record at midnight again, as after
    # a gateway restart: see test_backfill_ledger.)
    profile = [ts for ts in stamps if ts % 86_400_000 != 57_600_000]
    twice = sorted(ts for ts in set(profile) if profile.count(ts) > 1)
    assert not twice, twice
    assert len(set(stamps)) >= 288


class SlowLedgerDisk:
    """The real buffer, with the commits of gap rows held back while the test says so
    (a slow disk): what a restarted bus must wait for."""

    def __init__(self, buf: Buffer) -> None:
        self.buf = buf
        self.open = asyncio.Event()
        self.open.set()
        self.held = 0

    @property
    def healthy(self) -> bool:
        return self.buf.healthy

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        if self.open.is_set() or not job.gaps:
            return self.buf.submit(job)
        self.held += 1

        async def later() -> WriteJob:
            await self.open.wait()
            return await self.buf.submit(job)

        return asyncio.ensure_future(later())


@pytest.mark.asyncio
async def test_a_restarted_bus_starts_after_its_old_workers_writes_committed(
    tmp_path: Path,
) -> None:
    clock = SimClock()
    meter = SimMeter(addr(42), seed=42, clock=clock)
    path = str(tmp_path / "b.sqlite")
    async with (
        Dlt645Bus([meter], baud=9600, emulate_timing=True) as sim,
        await Buffer.open(path, BufferConfig(commit_max_rows=1000), Metrics()) as buf,
    ):
        pty = await sim.start_pty()
        disk = SlowLedgerDisk(buf)
        sched = Scheduler(energy_config(pty, [meter], OFFLINE_FAST, timeout=0.5), disk, Metrics())
        task = asyncio.create_task(sched.run())
        try:
            await asyncio.wait_for(sched.started.wait(), 5)
            old = sched.buses[0]
            await until(lambda: old.meters[0].stored_ms is not None, "first reading")
            meter.set_fault("no_answer")
            await until(lambda: old.meters[0].health.state == "offline", "offline")
            clock.advance(3 * 86_400)
            meter.clear_faults()

            def filling() -> list[GapRecord]:
                return [g for g in sched.gaps.active() if g.recovered >= 20]

            await until(lambda: bool(filling()), "the backfill under way")
            [gap] = filling()
            disk.open.clear()
            await until(lambda: disk.held > 0, "a slice written, not yet committed")
            old_task = sched._tasks["rs485-1"]
            changed = energy_config(pty, [meter], OFFLINE_FAST, timeout=0.6)
            restart = asyncio.create_task(sched.restart(changed, ["rs485-1"]))
            await until(old_task.done, "the old worker to stop")
            # The old worker's slice has not committed: the new worker does not start.
            done, _ = await asyncio.wait({restart}, timeout=0.5)
            assert not done
            assert "rs485-1" not in sched._tasks
            stale = sched.gaps.gaps[gap.id]
            disk.open.set()
            await asyncio.wait_for(restart, 10)
            committed = sched.gaps.gaps[gap.id]
            assert committed.todo_from_ms > stale.todo_from_ms  # the held slice landed
            new = next(w for w in sched.buses if w.name == "rs485-1")
            [job] = [j for j in new._backfills if j.record.id == gap.id]
            assert job.record == committed  # resumed from the newest row, not the stale one
            await until(lambda: not sched.gaps.gaps[gap.id].state.active, "filled", 60)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    [done_gap] = [g for g in read_gaps(path) if g.id == gap.id]
    assert done_gap.state is GapState.FILLED
    assert done_gap.recovered == done_gap.expected == 288
