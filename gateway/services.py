"""The daemon's running parts, each a task of the daemon's task group: the forwarders (one
per sink), the scheduler, the concentrator ingest and the ``seq-gaps`` task that closes
concentrator gaps whose wait is over. Started at start-up, stopped at shutdown, and
restarted one by one when a reloaded config changes them (:mod:`gateway.reload`).

One gap ledger view serves them all (``/status``, ``metergw_gaps``): the buses' backfills
and the ingest's seq gaps note their rows there as they commit, and the seq gaps
(:class:`~gateway.gaps.SeqGaps`) outlive an ingest restarted by a reload."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.analytics import daily_closer
from gateway.buffer import Buffer, JobStore
from gateway.config import Config
from gateway.config.northbound import IngestConfig
from gateway.forward import Forwarder, Sink
from gateway.forward.registry import SINKS
from gateway.gaps import GapCause, GapLedger, GapRecord, SeqGaps, age_seq_gaps, watch_filed
from gateway.ingest import ConcentratorIngest
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.reload import ReloadPlan
from gateway.status import StatusModel

if TYPE_CHECKING:
    from gateway.scheduler import Scheduler

log = get_logger("daemon")

_STOP_S = 5.0
"""How long a restarted part may take to stop (a forwarder mid-write, a bus mid-poll)."""


@dataclass(slots=True)
class Services:
    """See the module docstring. ``tg`` is the daemon's task group."""

    tg: asyncio.TaskGroup
    buffer: Buffer
    store: JobStore
    metrics: Metrics
    status: StatusModel
    profile_dirs: tuple[Path, ...]
    config: Config
    sinks: dict[str, tuple[Sink, asyncio.Task[None]]] = field(default_factory=dict)
    scheduler: Scheduler | None = None
    scheduler_task: asyncio.Task[None] | None = None
    gaps_task: asyncio.Task[None] | None = None
    ingest: ConcentratorIngest | None = None
    ingest_task: asyncio.Task[None] | None = None
    analytics_task: asyncio.Task[None] | None = None
    ledger: GapLedger | None = None
    seq_gaps: SeqGaps | None = None
    seq_gaps_task: asyncio.Task[None] | None = None

    # -- start ---------------------------------------------------------------------------

    def start(self, last_stored: dict[str, int], gaps: Sequence[GapRecord] = ()) -> None:
        """Start every configured part; ``gaps``: the ledger's unfinished gaps, whose
        backfills take up where an earlier run stopped (and whose concentrator gaps wait on
        for their messages)."""
        self.ledger = GapLedger(self.metrics)
        self.status.gaps = self.ledger
        seq = [g for g in gaps if g.cause is GapCause.CONCENTRATOR_SEQ]
        meter_gaps = [g for g in gaps if g.cause is not GapCause.CONCENTRATOR_SEQ]
        self.ledger.note(seq)
        self.seq_gaps = SeqGaps(self._seq_gap_wait(), self.ledger)
        if held := self.seq_gaps.take(seq):
            log.info("seq_gaps_resumed", gaps=held)
        for name in SINKS:
            self._start_sink(name)
        self._start_polling(last_stored, meter_gaps)
        if self.scheduler is None:
            self.ledger.note(meter_gaps)  # shown; backfilled when their buses come back
        self._start_ingest()
        self.seq_gaps_task = self.tg.create_task(
            age_seq_gaps(self.seq_gaps, self.store), name="seq-gaps"
        )
        # Each meter's day closed at its local midnight: figures from the local store.
        if closer := daily_closer(lambda: self.config, self.store):
            self.analytics_task = self.tg.create_task(closer.run(), name="analytics")

    def _start_sink(self, name: str) -> None:
        sink = SINKS[name].build(self.config, self.metrics)
        if sink is None:
            return
        task = self.tg.create_task(
            Forwarder(self.buffer, sink, self.metrics).run(), name=f"forward:{name}"
        )
        self.sinks[name] = (sink, task)
        self._publish_sinks()

    def _publish_sinks(self) -> None:
        self.status.sinks = list(self.sinks)
        self.status.sink_parts = [s for s, _ in self.sinks.values()]

    def _start_polling(self, last_stored: dict[str, int], gaps: Sequence[GapRecord] = ()) -> None:
        if not self.config.buses:
            return
        # The polling stack (drivers, pymodbus, pyserial: about 4 MB resident) is loaded
        # only where there are buses to poll.
        from gateway.scheduler import Scheduler

        self.scheduler = Scheduler(
            self.config,
            self.store,
            self.metrics,
            profile_dirs=self.profile_dirs,
            ledger=self.ledger,
        )
        self.status.scheduler = self.scheduler
        if resumed := self.scheduler.resume(last_stored):
            log.info("polling_resumed", meters=resumed)
        if queued := self.scheduler.resume_gaps(gaps):
            log.info("backfill_resumed", gaps=queued)
        self.scheduler_task = self.tg.create_task(self.scheduler.run(), name="scheduler")
        # Backfills filed by `metergw backfill` while the daemon runs.
        filed = watch_filed(self.buffer.path, self.scheduler.resume_gaps)
        self.gaps_task = self.tg.create_task(filed, name="gaps")

    def _start_ingest(self) -> None:
        if self.config.ingest is None:
            return
        if self.seq_gaps is not None:
            self.seq_gaps.wait_ms = int(self._seq_gap_wait() * 1000)
        # Ingest submits write jobs itself (a message's sequence mark and content key
        # commit with its readings), through the same write path.
        self.ingest = ConcentratorIngest(
            self.config.ingest,
            self.store,
            self.metrics,
            gateway_name=self.config.gateway.name,
            marks=self.buffer.marks(),
            seq_gaps=self.seq_gaps,
        )
        self.status.ingest = self.ingest
        self.ingest_task = self.tg.create_task(self.ingest.run(), name="ingest")

    def _seq_gap_wait(self) -> float:
        ingest = self.config.ingest
        if ingest is not None:
            return ingest.seq_gap_wait
        return float(IngestConfig.model_fields["seq_gap_wait"].default)

    # -- what shutdown needs -------------------------------------------------------------

    @property
    def sources(self) -> list[asyncio.Task[Any]]:
        tasks = (
            self.scheduler_task,
            self.gaps_task,
            self.ingest_task,
            self.analytics_task,
            self.seq_gaps_task,
        )
        return [t for t in tasks if t is not None]

    @property
    def forwarders(self) -> list[asyncio.Task[Any]]:
        return [t for _, t in self.sinks.values()]

    @property
    def sink_parts(self) -> list[Sink]:
        return [s for s, _ in self.sinks.values()]

    # -- reload --------------------------------------------------------------------------

    async def apply(self, plan: ReloadPlan) -> None:
        """Restart what ``plan`` says changed; leave the rest running."""
        self.config = plan.config
        for name in plan.sinks:
            await self._stop_sink(name)
            self._start_sink(name)
        if plan.ingest:
            await _stop(self.ingest_task)
            self.ingest = self.ingest_task = None
            self.status.ingest = None
            self._start_ingest()
        if plan.buses:
            if self.scheduler is None:
                self._start_polling({}, ())
            else:
                await self.scheduler.restart(plan.config, plan.buses)

    async def _stop_sink(self, name: str) -> None:
        sink, task = self.sinks.pop(name, (None, None))
        self._publish_sinks()
        await _stop(task)
        if sink is not None:
            try:
                async with asyncio.timeout(_STOP_S):
                    await sink.close()
            except Exception as exc:
                log.warning("sink_close_failed", sink=name, error=str(exc) or type(exc).__name__)


async def _stop(task: asyncio.Task[Any] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_STOP_S):
            await asyncio.wait([task])
