"""A bus's book of polls: when each group is due, what it missed, and whether it was stored.

The bus does not wait for a poll's commit before its next transaction (that would cap
a line at one poll per commit); a poll's readings are submitted and the bus moves on.
The poll is *done* when its commit lands, in order: only then does the meter's last
stored poll move. A poll whose commit fails leaves a ``gap_opened`` event (stored with
the next job that commits) and its groups due again at once.

Skipped and late ticks are counted per bus and group (``metergw_polls_skipped_total``,
``metergw_polls_late_total``, and in ``/status``); a group that cannot keep its interval
raises a ``poll_overrun`` event, at most once per :data:`OVERRUN_EVERY_S` per group,
with the measured cycle time and the interval that would fit.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.buffer import JobStore, Outcome, WriteJob
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.model import Event, EventKind, Reading, rows_of
from gateway.scheduler.meters import GroupRun, MeterRun
from gateway.scheduler.timing import reschedule

log = get_logger("scheduler")

MAX_IN_FLIGHT = 256
"""Polls submitted and not yet committed, per bus; past it the bus waits for the oldest
(a stalled disk must not fill memory with readings)."""
OVERRUN_EVERY_S = 600.0
LATE_SHARE = 0.1
"""A poll that starts more than this share of its interval after its tick is late."""
MAX_HELD_EVENTS = 1000
"""Events of polls that could not be stored, kept for the next commit."""


@dataclass(slots=True)
class GroupTally:
    """What one poll group of one bus missed since start."""

    skipped: int = 0
    late: int = 0
    polls: int = 0


@dataclass(slots=True)
class _Unstored:
    first_ms: int
    last_ms: int
    polls: int
    reason: str


@dataclass(slots=True)
class PollBook:
    """See the module docstring. One per bus, used by its task only."""

    bus: str
    store: JobStore
    metrics: Metrics
    wake: Callable[[], None] = lambda: None
    """Called when a group becomes due again (its poll was not stored)."""
    on_gap: Callable[[str, int, int, int, str], bool] | None = None
    """Files a not-stored gap ``(meter, first_ms, last_ms, polls, reason)`` in the gap
    ledger (and backfills it); returns False to leave it to a plain ``gap_opened`` event."""
    tallies: dict[str, GroupTally] = field(default_factory=dict)
    _in_flight: deque[asyncio.Future[WriteJob]] = field(default_factory=deque)
    _held: list[Event] = field(default_factory=list)
    _held_dropped: int = 0
    _unstored: dict[str, _Unstored] = field(default_factory=dict)
    _overrun_at: dict[str, float] = field(default_factory=dict)

    def served(
        self, meter: MeterRun, groups: Sequence[GroupRun], started: float, cycle_s: float
    ) -> list[Event]:
        """The due ``groups`` of ``meter`` were polled at ``started`` (epoch s): schedule
        their next tick, count what they skipped or were late by; overrun events."""
        now = time.time()
        events: list[Event] = []
        for g in groups:
            tally = self.tallies.setdefault(g.name, GroupTally())
            tally.polls += 1
            if started - g.next_due > g.interval * LATE_SHARE:
                tally.late += 1
                self.metrics.polls_late.labels(self.bus, g.name).inc()
            g.next_due, skipped = reschedule(g.interval, g.next_due, now)
            if not skipped:
                continue
            g.skipped += skipped
            tally.skipped += skipped
            self.metrics.polls_skipped.labels(self.bus, g.name).inc(skipped)
            if now >= self._overrun_at.get(g.name, 0.0):
                self._overrun_at[g.name] = now + OVERRUN_EVERY_S
                events.append(self._overrun(g, meter, skipped, cycle_s))
        return events

    def _overrun(self, g: GroupRun, meter: MeterRun, skipped: int, cycle_s: float) -> Event:
        reason = (
            f"poll group {g.name!r} cannot keep its {g.interval:g} s interval on bus "
            f"{self.bus}: one pass over its meters takes about {cycle_s:.2f} s; "
            f"an interval of {max(cycle_s, g.interval) * 1.2:.3g} s or fewer meters would fit"
        )
        log.warning(
            "poll_overrun",
            bus=self.bus,
            group=g.name,
            interval_s=g.interval,
            cycle_s=round(cycle_s, 3),
            skipped=skipped,
        )
        return Event(
            EventKind.POLL_OVERRUN,
            int(time.time() * 1000),
            self.bus,
            reason,
            {
                "group": g.name,
                "interval_s": g.interval,
                "cycle_s": round(cycle_s, 3),
                "skipped": skipped,
                "meter": meter.meter_id,
            },
        )

    async def submit(
        self,
        meter: MeterRun,
        groups: Sequence[GroupRun],
        readings: Sequence[Reading],
        events: Sequence[Event],
        start_ms: int,
    ) -> asyncio.Future[WriteJob]:
        """Hand a poll's results to the store without waiting for the commit (unless
        :data:`MAX_IN_FLIGHT` polls are already waiting); the poll settles when it lands."""
        while len(self._in_flight) >= MAX_IN_FLIGHT:
            await asyncio.wait([self._in_flight[0]])  # its callback removes it
        held = self._take_held()
        job = WriteJob(
            rows=rows_of(readings), events=[*held, *events], origin="poll", subject=self.bus
        )
        fut = self.store.submit(job)
        self._in_flight.append(fut)
        fut.add_done_callback(lambda f: self._settled(f, meter, groups, start_ms, job))
        return fut

    def _settled(
        self,
        fut: asyncio.Future[WriteJob],
        meter: MeterRun,
        groups: Sequence[GroupRun],
        start_ms: int,
        job: WriteJob,
    ) -> None:
        if self._in_flight and self._in_flight[0] is fut:  # commits land in order
            self._in_flight.popleft()
        elif fut in self._in_flight:
            self._in_flight.remove(fut)
        error: str | None = None
        if fut.cancelled():
            error = "cancelled"
        elif fut.exception() is not None:
            error = str(fut.exception())
        elif fut.result().outcome is Outcome.REJECTED:
            error = fut.result().reason
        if error is None:
            meter.stored_ms = max(meter.stored_ms or 0, start_ms)
            return
        # Not stored: the poll is not done. Its groups are due again now, the interval
        # it should have filled is a gap, and its events wait for the next commit.
        now = time.time()
        for g in groups:
            g.next_due = min(g.next_due, now)
        self.wake()
        gap = self._unstored.get(meter.meter_id)
        if gap is None:
            self._unstored[meter.meter_id] = _Unstored(start_ms, start_ms, 1, error)
            log.error("poll_not_stored", bus=self.bus, meter=meter.meter_id, error=error)
        else:
            gap.last_ms, gap.polls = max(gap.last_ms, start_ms), gap.polls + 1
        self._hold(job.events)

    def _hold(self, events: Sequence[Event]) -> None:
        self._held.extend(events)
        over = len(self._held) - MAX_HELD_EVENTS
        if over > 0:
            del self._held[:over]
            self._held_dropped += over

    def _take_held(self) -> list[Event]:
        out, self._held = self._held, []
        now_ms = int(time.time() * 1000)
        for meter_id, gap in self._unstored.items():
            if self.on_gap is not None and self.on_gap(
                meter_id, gap.first_ms, gap.last_ms, gap.polls, gap.reason
            ):
                continue
            out.append(
                Event(
                    EventKind.GAP_OPENED,
                    now_ms,
                    meter_id,
                    f"{gap.polls} poll(s) read but not stored: {gap.reason}",
                    {
                        "cause": "not_stored",
                        "from_ms": gap.first_ms,
                        "to_ms": gap.last_ms,
                        "polls": gap.polls,
                        "bus": self.bus,
                    },
                )
            )
        self._unstored = {}
        if self._held_dropped:
            out.append(
                Event(
                    EventKind.GAP_OPENED,
                    now_ms,
                    self.bus,
                    f"{self._held_dropped} event(s) of unstored polls could not be kept",
                    {"cause": "not_stored", "events_lost": self._held_dropped},
                )
            )
            self._held_dropped = 0
        return out

    async def drain(self) -> None:
        """Wait for every poll in flight to settle."""
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))
