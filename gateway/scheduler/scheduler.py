"""The southbound scheduler: one task per bus, buses concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from gateway.buffer import JobStore, WriteJob
from gateway.config.model import Config
from gateway.config.southbound import BusConfig, southbound_problems
from gateway.gaps import GapCause, GapLedger, GapRecord
from gateway.health import MeterState
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.model import Reading
from gateway.scheduler.bus import BusWorker
from gateway.scheduler.links import build_reader
from gateway.scheduler.meters import build_meters
from gateway.scheduler.snapshot import SchedulerSnapshot

log = get_logger("scheduler")

BARRIER_S = 10.0
"""How long a restarted bus waits for its old worker's writes to commit (a store that
fails for longer does not hold the reload: the new worker starts, and says so)."""


class BusWrites:
    """One bus worker's way to the write path, knowing what it submitted that has not
    committed: a restarted bus's new worker starts only after its old one's writes
    landed (their gap rows are then in the ledger it resumes from)."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._inflight: set[asyncio.Future[WriteJob]] = set()

    @property
    def healthy(self) -> bool:
        """Whether the buffer is committing (see :class:`~gateway.buffer.JobStore`)."""
        return self._store.healthy

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        """Submit ``job`` (see :class:`~gateway.buffer.JobStore`), counting it until done."""
        fut = self._store.submit(job)
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        return fut

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet committed (or failed)."""
        return len(self._inflight)

    async def drain(self) -> None:
        """Wait until every job submitted so far has committed or failed."""
        while self._inflight:
            await asyncio.wait(set(self._inflight))


class Scheduler:
    """Polls every configured bus and submits readings and events to ``store`` (the write
    path: validation, then the buffer), without waiting for each commit.

    ``run()`` runs until cancelled and closes every link on the way out;
    ``started`` is set once every bus task runs. Raises :class:`ValueError`
    listing every problem when a meter's quantities cannot be read with its
    protocol or profile.
    """

    def __init__(
        self,
        config: Config,
        store: JobStore,
        metrics: Metrics,
        *,
        profile_dirs: Sequence[Path] = (),
        ledger: GapLedger | None = None,
    ) -> None:
        """``ledger``: the daemon's gap ledger view (shared with the ingest's gaps)."""
        problems = southbound_problems(config.poll_groups, config.buses, profile_dirs)
        if problems:
            raise ValueError("\n".join(problems))
        self.config = config
        self.metrics = metrics
        self.store = store
        self.profile_dirs = tuple(profile_dirs)
        self.started = asyncio.Event()
        self.buses: list[BusWorker] = []
        self.gaps = ledger if ledger is not None else GapLedger(metrics)
        """The gap ledger as committed: what ``/status`` and ``metergw_gaps`` show."""
        self._by_meter: dict[str, BusWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._writes: dict[str, BusWrites] = {}
        self._tg: asyncio.TaskGroup | None = None
        for bus in config.buses:
            self._add(self._build(bus))
        self._count_meters()

    def _build(self, bus: BusConfig) -> BusWorker:
        def discarded(reason: str, bus_name: str = bus.name) -> None:
            self.metrics.frames_discarded.labels(bus_name, reason).inc()

        reader = build_reader(bus, profile_dirs=self.profile_dirs, on_discard=discarded)
        meters = build_meters(bus, self.config.poll_groups, self.config.gateway.timezone)
        writes = self._writes[bus.name] = BusWrites(self.store)
        return BusWorker(
            bus, meters, reader, writes, self.metrics, self._count_meters, ledger=self.gaps
        )

    def _add(self, worker: BusWorker) -> None:
        self.buses.append(worker)
        for m in worker.meters:
            self._by_meter[m.meter_id] = worker

    async def restart(self, config: Config, names: Sequence[str]) -> None:
        """Apply a reloaded ``config`` to the buses ``names`` (changed, added or removed):
        each old bus task stops (what it submitted still commits), a new one starts from
        the new config; each meter takes up from its last stored poll, so a gap across
        the restart is found as after a gateway restart, and the gaps its meters had open
        or filling are taken up from the ledger as at a start. The new worker starts once
        the old one's writes committed (a barrier: the ledger then holds its last rows,
        and the two never write at once). Other buses are not touched."""
        problems = southbound_problems(config.poll_groups, config.buses, self.profile_dirs)
        if problems:
            raise ValueError("\n".join(problems))
        self.config = config
        carried: dict[str, int] = {}
        for name in names:
            old = next((w for w in self.buses if w.name == name), None)
            task = self._tasks.pop(name, None)
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
            if (writes := self._writes.pop(name, None)) is not None:
                await _barrier(name, writes)
            if old is not None:
                self.buses.remove(old)
                for m in old.meters:
                    self._by_meter.pop(m.meter_id, None)
                    last = m.stored_ms or m.health.last_ok_ms
                    if last is not None:
                        carried[m.meter_id] = last
            bus = next((b for b in config.buses if b.name == name), None)
            if bus is None:
                continue
            worker = self._build(bus)
            self._add(worker)
            for m in worker.meters:
                if m.meter_id in carried:
                    m.health.last_ok_ms = carried[m.meter_id]
                    m.gap_pending = True
            active = [
                g
                for g in self.gaps.active()
                if g.meter in worker.by_id and g.cause is not GapCause.CONCENTRATOR_SEQ
            ]
            if queued := worker.resume_gaps(active):
                log.info("backfill_resumed", bus=name, gaps=queued)
            self._start(worker)
        self._count_meters()

    def _start(self, worker: BusWorker, started: Callable[[], None] = lambda: None) -> None:
        assert self._tg is not None, "start buses from run()"
        self._tasks[worker.name] = self._tg.create_task(
            worker.run(started), name=f"bus:{worker.name}"
        )

    async def run(self) -> None:
        """Run every bus task until cancelled."""
        running = 0

        def one_started() -> None:
            nonlocal running
            running += 1
            if running == len(self.buses):
                self.started.set()

        if not self.buses:
            self.started.set()
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            for worker in self.buses:
                self._start(worker, one_started)
            # Until cancelled, even with no bus: a reload may add one.
            await asyncio.Event().wait()

    def resume(self, last_stored: Mapping[str, int]) -> int:
        """Take up where an earlier run stopped: ``last_stored`` maps meter ids to the
        time (ms UTC) of their newest stored reading. A meter found there starts with
        that as its last good poll and a gap pending, so that its first answer opens
        a gap (and backfills it) when the gateway was down for longer than the meter's
        energy interval. Call before :meth:`run`; returns how many meters resumed."""
        resumed = 0
        for worker in self.buses:
            for m in worker.meters:
                ts_ms = last_stored.get(m.meter_id)
                if ts_ms is not None and m.health.last_ok_ms is None:
                    m.health.last_ok_ms = ts_ms
                    m.gap_pending, m.gap_cause = True, GapCause.GATEWAY_DOWN
                    resumed += 1
        return resumed

    def resume_gaps(self, records: Sequence[GapRecord]) -> int:
        """Take up the backfills an earlier run left unfinished (``records`` from the
        ledger, see :func:`gateway.gaps.load_gaps`); returns how many were queued. Gaps of
        meters no longer configured stay in the ledger as they are."""
        new = [
            r
            for r in records
            if not self.gaps.known(r.id) and r.cause is not GapCause.CONCENTRATOR_SEQ
        ]
        self.gaps.note(new)
        return sum(w.resume_gaps(new) for w in self.buses)

    def snapshot(self) -> SchedulerSnapshot:
        """Every bus and meter, now."""
        return SchedulerSnapshot(tuple(w.snapshot() for w in self.buses))

    async def read_now(self, meter_id: str, keys: Sequence[str]) -> list[Reading]:
        """Read ``keys`` (all of the meter's keys if empty) ahead of scheduled polls.

        The readings are also stored; this returns once they are. Raises :class:`KeyError`
        for an unknown meter, :class:`ValueError` for keys the meter cannot be
        read for, and a :class:`drivers.errors.DriverError` when the meter does
        not answer.
        """
        worker = self._by_meter.get(meter_id)
        if worker is None:
            raise KeyError(f"no meter {meter_id!r}")
        return await worker.read_now(meter_id, keys)

    def _count_meters(self) -> None:
        counts = dict.fromkeys((str(s) for s in MeterState), 0)
        for w in self.buses:
            for m in w.meters:
                counts[str(m.health.state)] += 1
        for state, n in counts.items():
            self.metrics.meters.labels(state).set(n)


async def _barrier(bus: str, writes: BusWrites) -> None:
    """Wait (bounded) for a stopped worker's writes to commit."""
    try:
        async with asyncio.timeout(BARRIER_S):
            await writes.drain()
    except TimeoutError:
        log.warning("bus_writes_still_in_flight", bus=bus, jobs=writes.in_flight)
