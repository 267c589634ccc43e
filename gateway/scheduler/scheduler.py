"""The southbound scheduler: one task per bus, buses concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

from gateway.buffer import JobStore
from gateway.config.model import Config
from gateway.config.southbound import southbound_problems
from gateway.gaps import GapCause, GapLedger, GapRecord
from gateway.health import MeterState
from gateway.metrics import Metrics
from gateway.model import Reading
from gateway.scheduler.bus import BusWorker
from gateway.scheduler.links import build_reader
from gateway.scheduler.meters import build_meters
from gateway.scheduler.snapshot import SchedulerSnapshot


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
    ) -> None:
        problems = southbound_problems(config.poll_groups, config.buses, profile_dirs)
        if problems:
            raise ValueError("\n".join(problems))
        self.config = config
        self.metrics = metrics
        self.started = asyncio.Event()
        self.buses: list[BusWorker] = []
        self.gaps = GapLedger(metrics)
        """The gap ledger as committed: what ``/status`` and ``metergw_gaps`` show."""
        self._by_meter: dict[str, BusWorker] = {}
        for bus in config.buses:

            def discarded(reason: str, bus_name: str = bus.name) -> None:
                metrics.frames_discarded.labels(bus_name, reason).inc()

            reader = build_reader(bus, profile_dirs=profile_dirs, on_discard=discarded)
            meters = build_meters(bus, config.poll_groups, config.gateway.timezone)
            worker = BusWorker(
                bus, meters, reader, store, metrics, self._count_meters, ledger=self.gaps
            )
            self.buses.append(worker)
            for m in meters:
                self._by_meter[m.meter_id] = worker
        self._count_meters()

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
            for worker in self.buses:
                tg.create_task(worker.run(one_started), name=f"bus:{worker.name}")
            if not self.buses:
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
        new = [r for r in records if not self.gaps.known(r.id)]
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
