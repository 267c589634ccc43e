"""The task that owns one bus: one transaction at a time, never stalled by one meter.

Order of work: on-demand reads first, then the meter whose poll is due
soonest (answering meters before suspect and offline ones when several are
due at once); the records of a meter back from a gap are read in slices
between polls. Offline meters are retried at their backoff; when the whole bus
is at fault, one meter is probed at a time (the link reopened first) with
growing pauses until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.errors import DeviceError, DriverError, FrameError, LinkError, Timeout
from gateway.buffer import JobStore
from gateway.config.southbound import BusConfig
from gateway.gaps import GapCause, GapLedger, GapRecord
from gateway.health import BusHealth, MeterState, ProbeBudget
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.model import Event, Reading, TimeSource
from gateway.scheduler.links import link_name
from gateway.scheduler.meters import MeterRun
from gateway.scheduler.pollbook import GroupTally, PollBook
from gateway.scheduler.recovery import (
    Backfill,
    check_clock,
    not_stored_backfill,
    start_backfill,
)
from gateway.scheduler.snapshot import BusSnapshot, GroupSnapshot, MeterSnapshot
from gateway.scheduler.timesync import TimeSync
from gateway.scheduler.timing import Utilisation
from gateway.southbound.reader import MeterReader, ReadResult

log = get_logger("scheduler")

_PROBE_MIN = 0.2
_PROBE_MAX = 60.0
POLLS_PER_SLICE = 4
"""On a busy line, a backfill slice (one or two transactions) after this many polls."""


@dataclass(slots=True)
class _Demand:
    meter: MeterRun
    keys: tuple[str, ...]
    future: asyncio.Future[list[Reading]]


def _result_label(error: BaseException | None, result: ReadResult | None) -> str:
    if error is None:
        return "partial" if result is not None and result.errors else "ok"
    for cls, label in (
        (Timeout, "timeout"),
        (DeviceError, "device_error"),
        (FrameError, "frame_error"),
        (LinkError, "link_error"),
    ):
        if isinstance(error, cls):
            return label
    return "error"


class BusWorker:
    """Polls the meters of one bus; :meth:`run` is its one task."""

    def __init__(
        self,
        cfg: BusConfig,
        meters: Sequence[MeterRun],
        reader: MeterReader,
        store: JobStore,
        metrics: Metrics,
        on_change: Callable[[], None] = lambda: None,
        ledger: GapLedger | None = None,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.meters = list(meters)
        self.by_id = {m.meter_id: m for m in self.meters}
        self.reader = reader
        self.store = store
        self.metrics = metrics
        self.on_change = on_change
        """Told when a meter's state may have changed (recounts the meters gauge)."""
        self._told = 0.0
        self._series: dict[tuple[Any, str], Any] = {}
        """This bus's labelled metric series, made at first use (labels() costs a lock
        and a lookup, and the poll loop counts several per poll)."""
        self.health = BusHealth(cfg.name)
        self.utilisation = Utilisation()
        self._demand: deque[_Demand] = deque()
        self._backfills: deque[Backfill] = deque()
        """Gaps being filled, oldest first, a slice at a time between polls."""
        self.ledger = ledger
        self._paused: dict[str, list[Backfill]] = {}
        """Backfills of meters that stopped answering, resumed at their next answer."""
        self._polls_since_slice = 0
        self._poll_s: float | None = None
        self._wake = asyncio.Event()
        self.book = PollBook(cfg.name, store, metrics, self._wake.set, on_gap=self._not_stored)
        self.probes = ProbeBudget(cfg.probe_share, cfg.timeout)
        """Time for probing offline meters at their groups' cadence (see health.probe)."""
        self._probe_delay = _PROBE_MIN
        self._probe_at = 0.0
        self._probe_index = 0
        self.link = link_name(cfg)
        self.time_sync = TimeSync(cfg, reader, self.meters)

    # ------------------------------------------------------------------ public

    async def read_now(self, meter_id: str, keys: Sequence[str]) -> list[Reading]:
        """Read ``keys`` from a meter before any scheduled poll; raise a DriverError."""
        meter = self.by_id[meter_id]
        keys = tuple(keys or meter.all_keys())
        self.reader.check_keys(meter.cfg, keys)
        future: asyncio.Future[list[Reading]] = asyncio.get_running_loop().create_future()
        self._demand.append(_Demand(meter, keys, future))
        self._wake.set()
        return await future

    def snapshot(self) -> BusSnapshot:
        """The bus and its meters, now."""
        meters = tuple(
            MeterSnapshot(
                m.meter_id,
                m.address,
                str(m.health.state),
                m.health.last_ok_ms,
                m.health.last_error,
                m.health.misses,
                None if math.isinf(m.due()) else int(m.due() * 1000),
            )
            for m in self.meters
        )
        intervals = {g.name: g.interval for m in self.meters for g in m.groups}
        tallies = self.book.tallies
        groups = tuple(
            GroupSnapshot(name, interval, t.polls, t.skipped, t.late)
            for name, interval in sorted(intervals.items())
            for t in [tallies.get(name) or GroupTally()]
        )
        polled = sum(1 for m in self.meters if m.groups)
        cycle = None if self._poll_s is None else round(self._poll_s * polled, 3)
        return BusSnapshot(
            self.name,
            self.cfg.protocol,
            self.health.state,
            self.utilisation.ratio(),
            self.link,
            meters,
            groups,
            cycle,
        )

    async def run(self, started: Callable[[], None] = lambda: None) -> None:
        """Poll until cancelled; close the link on the way out."""
        log.info("bus_started", bus=self.name, link=self.link, meters=len(self.meters))
        started()
        me = asyncio.current_task()
        try:
            while True:
                # A library that swallowed our cancellation (pymodbus's connect, wait_for
                # on 3.11) must not keep the bus running: a pending cancel ends the loop.
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError
                try:
                    await self._step()
                except Exception:
                    # A bug or an acceptor failure must not end polling: log, pause, go on.
                    log.exception("bus_task_error", bus=self.name)
                    await asyncio.sleep(1.0)
        finally:
            for d in self._demand:
                d.future.cancel()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self.book.drain()  # settle what is in flight (the tap shields it)
            for job in self._backfills:
                with contextlib.suppress(Exception):
                    await job.close()
            with contextlib.suppress(Exception):
                await self.reader.close()
            log.info("bus_stopped", bus=self.name)

    # ------------------------------------------------------------------ loop

    async def _step(self) -> None:
        if self._demand:
            await self._serve(self._demand.popleft())
            return
        meter, due = self._next()
        delay = due - time.time()
        # Backfill takes the line when no poll is due, and one slice in every
        # POLLS_PER_SLICE polls on a line that is never idle; not during a bus fault.
        idle = meter is None or delay > 0 or self._polls_since_slice >= POLLS_PER_SLICE
        if self._backfills and idle and self.health.state != "fault" and self.store.healthy:
            await self._backfill_slice()
            return
        if meter is None or delay > 0:
            self._series_of(self.metrics.bus_utilisation).set(self.utilisation.ratio())
            await self._sleep(delay)
        elif self.health.state == "fault":
            await self._probe(meter)
        else:
            await self._poll(meter)

    async def _backfill_slice(self) -> None:
        job = self._backfills[0]
        t0 = time.monotonic()
        records = await job.step()
        self.utilisation.add(t0, time.monotonic())
        self._polls_since_slice = 0
        if job.done:
            self._backfills.popleft()
            if job.paused:
                self._paused.setdefault(job.meter.meter_id, []).append(job)
        # Records are few and the gap's progress waits on them: this one commit is awaited.
        try:
            await asyncio.shield(job.submit(self.store, records))
        except Exception:
            await self._rewind(job)
            raise

    async def _rewind(self, job: Backfill) -> None:
        """A slice was not stored: the job reads it again, first in line."""
        await job.rewind()
        with contextlib.suppress(ValueError):
            self._paused.get(job.meter.meter_id, []).remove(job)
        if job not in self._backfills:
            self._backfills.appendleft(job)

    def resume_gaps(self, records: Sequence[GapRecord]) -> int:
        """Queue the backfills of gaps an earlier run left open or filling (from the
        ledger); each resumes from the part its row says is still to read."""
        queued = 0
        for rec in records:
            meter = self.by_id.get(rec.meter)
            if meter is None or not rec.state.active:
                continue
            self._backfills.append(Backfill(self.reader, meter, self.name, rec, self.ledger))
            queued += 1
        if queued:
            self._wake.set()
        return queued

    def _not_stored(self, meter_id: str, first_ms: int, last_ms: int, polls: int, why: str) -> bool:
        """Polls read but not stored: a gap in the ledger, backfilled from the meter's records."""
        meter = self.by_id.get(meter_id)
        if meter is None or not self.cfg.backfill:
            return False
        for queued in self._backfills:
            same = queued.meter is meter and queued.record.cause is GapCause.NOT_STORED
            if same and not queued.started:
                queued.submit(self.store, queued.extend(last_ms))  # the same outage, longer
                return True
        job = not_stored_backfill(self.reader, meter, self.name, first_ms, last_ms, self.ledger)
        job.submit(self.store, job.opening(f"{polls} poll(s) read but not stored: {why}", polls))
        self._backfills.append(job)
        return True

    def _next(self) -> tuple[MeterRun | None, float]:
        if not self.meters:
            return None, math.inf
        if self.health.state == "fault":
            polled = [m for m in self.meters if m.groups]
            candidates = [m for m in polled if m.health.state is not MeterState.OFFLINE]
            pool = candidates or polled
            if not pool:
                return None, math.inf
            return pool[self._probe_index % len(pool)], self._probe_at
        probe_from = time.time() + self.probes.wait_s(time.monotonic())
        best = min(self.meters, key=lambda m: (m.due(probe_from), m.rank()))
        return best, best.due(probe_from)

    async def _sleep(self, delay: float) -> None:
        self._wake.clear()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that arrives as the wait ends, and the bus task never stops.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(delay, 3600.0)):
                await self._wake.wait()

    async def _serve(self, demand: _Demand) -> None:
        if demand.future.cancelled():
            return
        try:
            readings = await self._poll(demand.meter, demand.keys)
        except Exception as exc:
            if not demand.future.cancelled():
                demand.future.set_exception(exc)
            if not isinstance(exc, DriverError):
                raise
            return
        if not demand.future.cancelled():
            # Only what was asked for; a clock check on first contact goes to the acceptor.
            wanted = set(demand.keys)
            demand.future.set_result([r for r in readings if r.key in wanted])

    async def _probe(self, meter: MeterRun) -> None:
        self._probe_index += 1
        try:
            await self.reader.reopen()
        except DriverError as exc:
            self._probe_failed(meter, exc)
            self._series_of(self.metrics.polls, "link_error").inc()
            return
        await self._poll(meter)

    def _probe_failed(self, meter: MeterRun, error: BaseException) -> None:
        self.health.probes += 1
        meter.health.last_error = str(error)
        self._probe_at = time.time() + self._probe_delay
        self._probe_delay = min(self._probe_delay * 2, self.cfg.offline_backoff_max, _PROBE_MAX)
        log.debug("bus_probe_failed", bus=self.name, meter=meter.meter_id, error=str(error))

    # ------------------------------------------------------------------ one poll

    async def _poll(self, meter: MeterRun, keys: Sequence[str] | None = None) -> list[Reading]:
        """Poll one meter, hand the results to the acceptor; raise the error for demands."""
        start = time.time()
        start_ms = int(start * 1000)
        t0 = time.monotonic()
        demand = keys is not None
        due_groups = []
        was = meter.health.state
        retry = self.health.state == "fault" or was is MeterState.OFFLINE
        if keys is None:
            due_groups = [g for g in meter.groups if retry or g.next_due <= start]
            keys = tuple(dict.fromkeys(k for g in due_groups for k in g.keys))
            if not keys:
                return []
        result: ReadResult | None = None
        error: DriverError | None = None
        try:
            result = await self.reader.read(meter.cfg, keys, probe=retry)
        except DriverError as exc:  # only the device and the line count against a meter
            error = exc
        readings: list[Reading] = []
        events: list[Event] = []
        if result is not None:
            readings, events = await self._answered(meter, result, start_ms)
        else:
            assert error is not None
            events = await self._failed(meter, error, start_ms)
        end = time.monotonic()
        self.utilisation.add(t0, end)
        if retry and self.health.state != "fault" and not demand:
            self.probes.spend(end - t0, end)  # an offline meter's probe (or retry)
            self._series_of(self.metrics.probes, "silent" if error else "answered").inc()
        cycle = self._cycle_seconds(end - t0)
        events += self.book.served(meter, due_groups, start, cycle)
        self._polls_since_slice += 1
        self._series_of(self.metrics.polls, _result_label(error, result)).inc()
        self._series_of(self.metrics.poll_seconds).observe(end - t0)
        self._series_of(self.metrics.bus_utilisation).set(self.utilisation.ratio(end))
        if readings or events:
            stored = await self.book.submit(meter, due_groups, readings, events, start_ms)
            if demand:  # the caller hears of the readings once they are stored
                await asyncio.shield(stored)
        if meter.health.state is not was or end - self._told >= 1.0:
            self._told = end  # at once for this meter, and at least every second
            self.on_change()
        if error is not None and demand:
            raise error
        return readings

    def _series_of(self, family: Any, label: str = "") -> Any:
        """``family.labels(bus[, label])``, looked up once."""
        series = self._series.get((family, label))
        if series is None:
            series = family.labels(self.name, label) if label else family.labels(self.name)
            self._series[(family, label)] = series
        return series

    def _cycle_seconds(self, last_poll_s: float) -> float:
        """About how long one pass over every polled meter takes (smoothed poll time x
        meters), for ``metergw_bus_cycle_seconds`` and overrun events."""
        self._poll_s = (
            last_poll_s if self._poll_s is None else 0.9 * self._poll_s + 0.1 * last_poll_s
        )
        cycle = self._poll_s * sum(1 for m in self.meters if m.groups)
        self._series_of(self.metrics.bus_cycle_seconds).set(cycle)
        return cycle

    async def _answered(
        self, meter: MeterRun, result: ReadResult, start_ms: int
    ) -> tuple[list[Reading], list[Event]]:
        was_fault = self.health.state == "fault"
        previous = meter.health.state
        last_ok = meter.health.last_ok_ms
        drift_before = meter.drift_ms
        outcome = meter.health.success(start_ms)
        events = self.health.on_success(meter.meter_id, outcome.events, start_ms)
        if was_fault:
            log.info("bus_recovered", bus=self.name, meter=meter.meter_id)
            self._probe_delay = _PROBE_MIN
            now = time.time()
            for m in self.meters:
                for g in m.groups:
                    g.next_due = min(g.next_due, now)
        if previous is not MeterState.ONLINE and previous is not MeterState.UNKNOWN:
            log.info("meter_back_online", meter=meter.meter_id, bus=self.name, was=str(previous))
        for err in result.errors:
            log.info("meter_item_error", meter=meter.meter_id, bus=self.name, error=err)
        received = int(time.time() * 1000)
        readings = [
            Reading(
                meter.meter_id,
                s.key,
                s.value,
                s.unit,
                start_ms,
                TimeSource.POLL,
                received,
                self.name,
            )
            for s in result.samples
        ]
        meter.polls.append(start_ms)
        del meter.polls[:-64]
        returning = outcome.returned_from_ms is not None or meter.gap_pending
        cause = GapCause.METER_OFFLINE if outcome.returned_from_ms else meter.gap_cause
        meter.gap_pending = False
        for paused in self._paused.pop(meter.meter_id, []):
            self._backfills.append(paused.resumed())
        first = previous is MeterState.UNKNOWN
        if returning or first or time.time() >= meter.next_clock:
            r, e = await check_clock(
                self.reader,
                meter,
                self.name,
                interval=self.cfg.clock_check_interval,
                drift_max=self.cfg.clock_drift_max,
            )
            readings += r
            events += e
        if returning and self.cfg.backfill:
            job = start_backfill(
                self.reader,
                meter,
                self.name,
                last_ok_ms=last_ok,
                now_ms=start_ms,
                drift_before_ms=drift_before,
                cause=cause,
                ledger=self.ledger,
                readings=readings,
            )
            if job is not None:  # read between polls, see _step; filed in the ledger now
                job.submit(self.store, job.opening())
                self._backfills.append(job)
        # Not while its gap is read: the records were stamped by the clock as it was.
        if self.time_sync.due(meter) and all(j.meter is not meter for j in self._backfills):
            r, e = await self.time_sync.sync(meter)
            readings += r
            events += e
        meter.note_registers(readings)
        return readings, events

    async def _failed(self, meter: MeterRun, error: BaseException, start_ms: int) -> list[Event]:
        text = str(error)
        if self.health.state == "fault":
            self._probe_failed(meter, error)
            return []
        expected = [m.meter_id for m in self.meters if m.health.state is not MeterState.OFFLINE]
        if not self.health.streak_started:
            for m in self.meters:
                m.health.checkpoint()
        outcome = meter.health.failure(start_ms, time.time(), text)
        events, fault = self.health.on_failure(
            meter.meter_id,
            outcome.events,
            start_ms,
            expected=expected,
            error=text,
            link_error=isinstance(error, LinkError),
        )
        if fault:
            for m in self.meters:
                m.health.rollback()
                m.gap_pending, m.gap_cause = True, GapCause.BUS_FAULT
            meter.health.last_error = text
            with contextlib.suppress(Exception):
                await self.reader.close()
            self._probe_delay = _PROBE_MIN
            self._probe_at = time.time() + self._probe_delay
            log.warning("bus_fault", bus=self.name, link=self.link, error=text)
        for ev in events:
            log.info(str(ev.kind), meter=ev.subject, bus=self.name, reason=ev.reason)
        return events
