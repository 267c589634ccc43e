"""Polls do not wait for commits; a poll is done when stored; missed ticks show."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from gateway.buffer import BufferError, WriteJob
from gateway.metrics import Metrics
from gateway.model import EventKind
from simulator import Dlt645Bus, SimClock, SimMeter
from tests.gateway.scheduler.conftest import ENERGY, addr, dlt_config, running, until

pytestmark = pytest.mark.asyncio


def groups(interval: str) -> str:
    return f'[poll_groups.energy]\ninterval = "{interval}"\nquantities = {ENERGY}\n'


class HeldStore:
    """The write path with commits that land only when the test says so."""

    healthy = True

    def __init__(self) -> None:
        self.jobs: list[tuple[WriteJob, asyncio.Future[WriteJob]]] = []
        self.fail: Exception | None = None

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        fut: asyncio.Future[WriteJob] = asyncio.get_running_loop().create_future()
        self.jobs.append((job, fut))
        return fut

    def land(self) -> int:
        """Commit (or fail, with ``fail`` set) every job submitted so far, in order."""
        n = 0
        for job, fut in self.jobs:
            if not fut.done():
                if self.fail is not None:
                    fut.set_exception(self.fail)
                else:
                    fut.set_result(job)
                n += 1
        return n

    def events(self, kind: EventKind) -> list[tuple[str, str, dict[str, object]]]:
        return [
            (e.subject, e.reason, dict(e.detail))
            for job, fut in self.jobs
            if fut.done() and not fut.cancelled() and fut.exception() is None
            for e in job.events
            if e.kind is kind
        ]


def polls(store: HeldStore) -> list[WriteJob]:
    return [job for job, _ in store.jobs if job.rows]


async def test_a_bus_polls_on_while_earlier_readings_wait_for_their_commit() -> None:
    meter = SimMeter(addr(1), seed=1, clock=SimClock(speed=0))
    async with Dlt645Bus([meter]) as sim:
        cfg = dlt_config(
            await sim.start_pty(), [meter.address], groups=groups("200ms"), poll=["energy"]
        )
        store = HeldStore()
        async with running(cfg, store) as sched:  # type: ignore[arg-type]
            # No commit lands, and the bus keeps its 200 ms interval all the same.
            await until(lambda: len(polls(store)) >= 4, 5, "four polls with no commit")
            run = sched.buses[0].meters[0]
            assert run.stored_ms is None  # not done before its commit
            first = polls(store)[0].rows[0][4]
            store.land()
            await until(lambda: run.stored_ms is not None, 2, "the commit to settle the polls")
            assert run.stored_ms is not None
            assert run.stored_ms >= first


async def test_a_poll_that_is_not_stored_leaves_a_gap_and_is_due_again() -> None:
    meter = SimMeter(addr(1), seed=1, clock=SimClock(speed=0))
    async with Dlt645Bus([meter]) as sim:
        cfg = dlt_config(
            await sim.start_pty(), [meter.address], groups=groups("1h"), poll=["energy"]
        )
        store = HeldStore()
        async with running(cfg, store):
            await until(lambda: len(polls(store)) == 1, 5, "the first poll")
            failed_at = time.monotonic()
            store.fail = BufferError("buffer b.sqlite: commit failed: database or disk is full")
            store.land()
            # Due again at once, not at the next hourly tick.
            await until(lambda: len(polls(store)) == 2, 5, "the poll again")
            assert time.monotonic() - failed_at < 5
            store.fail = None
            store.land()
            await until(lambda: store.events(EventKind.GAP_OPENED), 2, "the gap event")
    [(subject, reason, detail)] = store.events(EventKind.GAP_OPENED)
    assert subject == meter.address
    assert "not stored" in reason
    assert "disk is full" in reason
    assert detail["cause"] == "not_stored"
    assert detail["polls"] == 1
    # The first poll's meter_online event was not lost with it: it came with the retry.
    assert [e.kind for job in polls(store)[1:] for e in job.events].count(
        EventKind.METER_ONLINE
    ) == 1


async def test_ticks_a_busy_line_misses_are_counted_shown_and_reported_once() -> None:
    clock = SimClock(speed=0)
    meters = [SimMeter(addr(n), seed=n, clock=clock) for n in range(1, 7)]
    # 2400 baud with the line's timing and a 50 ms turnaround: six meters take well over
    # the 250 ms interval, so ticks are skipped.
    async with Dlt645Bus(meters, baud=2400, emulate_timing=True, turnaround=0.05) as sim:
        cfg = dlt_config(
            await sim.start_pty(),
            [m.address for m in meters],
            groups=groups("250ms"),
            poll=["energy"],
        )
        store = HeldStore()
        metrics = Metrics()
        async with running(cfg, store, metrics) as sched:  # type: ignore[arg-type]

            def skipped() -> float:
                return (
                    metrics.registry.get_sample_value(
                        "metergw_polls_skipped_total", {"bus": "rs485-1", "group": "energy"}
                    )
                    or 0
                )

            await until(lambda: skipped() >= 3, 15, "skipped ticks")
            store.land()
            snap = sched.snapshot().buses[0]
            cycle = metrics.registry.get_sample_value(
                "metergw_bus_cycle_seconds", {"bus": "rs485-1"}
            )
    [group] = snap.groups
    assert (group.name, group.interval_s) == ("energy", 0.25)
    assert group.skipped >= 3
    assert group.polls > 0
    assert snap.cycle_s is not None
    assert snap.cycle_s > 0.25
    assert cycle is not None
    assert cycle > 0.25
    overruns = store.events(EventKind.POLL_OVERRUN)
    assert len(overruns) == 1  # rate-limited: one per group per 10 minutes
    subject, reason, detail = overruns[0]
    assert subject == "rs485-1"
    assert detail["group"] == "energy"
    assert "cannot keep its 0.25 s interval" in reason


async def test_a_bug_in_a_reader_is_not_counted_against_the_meter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    meter = SimMeter(addr(1), seed=1, clock=SimClock(speed=0))
    async with Dlt645Bus([meter]) as sim:
        cfg = dlt_config(
            await sim.start_pty(), [meter.address], groups=groups("200ms"), poll=["energy"]
        )
        store = HeldStore()
        async with running(cfg, store) as sched:  # type: ignore[arg-type]
            worker = sched.buses[0]
            calls: list[Sequence[str]] = []

            async def broken(
                meter_cfg: object, keys: Sequence[str], *, probe: bool = False
            ) -> None:
                calls.append(keys)
                raise KeyError("a bug of ours")

            monkeypatch.setattr(worker.reader, "read", broken)
            await until(lambda: len(calls) >= 1, 5, "a read")
            run = worker.meters[0]
            assert run.health.misses == 0
            assert str(run.health.state) != "suspect"
