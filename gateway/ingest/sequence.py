"""What a concentrator's ``seq`` says: network gaps and counter restarts, never repeats.

The rule (docs/concentrator-schema.md): a message is a *repeat* only when its content is
byte for byte one already stored (the buffer's ``once`` key is the payload's digest). A
broker's resend of an unacknowledged message, or a concentrator's retry of the same
batch, is such a repeat. ``seq`` decides nothing about storage, so a concentrator that
reboots with its counter or its clock reset, or one message with a wild ``seq``, cannot
make later real data look old and vanish.

``seq`` still tells what happened on the way: a jump is a ``network_gap`` event and a
gap in the ledger (:mod:`gateway.gaps.network`), a message that fills one counts there,
a step back is a ``counter_reset``, and a jump past :data:`SEQ_GAP_MAX` is a new count
too (no gap of that size). With a shared subscription the other gateways of the group
take the missing numbers, so gaps are not reported.

The gap's row must commit with the message that revealed it, so the tracker plans each
message as it is submitted (:meth:`SequenceTracker.plan`, in arrival order, which is
commit order) from the newest seq submitted before it. Whether it was stored is known
only after the commit (:meth:`SequenceTracker.settled`): a step back may be a broker's
resend of a stored message (a repeat: nothing happened), so it, and the messages of the
same concentrator after it, are decided then, against what was stored, and their
events and rows follow in a job of their own. A plan made on a message that was not
stored after all is decided again the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.buffer import ConcentratorMark
from gateway.gaps import GapRecord
from gateway.gaps.network import SEQ_GAP_MAX, SeqGaps
from gateway.model import Event, EventKind

Detail = dict[str, str | int | float | bool | None]


@dataclass(slots=True)
class SeqPlan:
    """What one message's ``seq`` was taken to mean when it was submitted."""

    mark: ConcentratorMark
    deferred: bool = False
    """Decided after its commit (a step back, or behind one)."""
    base: int | None = None
    """The newest seq the plan took as stored before it."""
    late: int | None = None
    """The seq, when the message was counted as a late one of the gap in ``records``."""
    before: GapRecord | None = None
    """That gap as it was before."""
    events: list[Event] = field(default_factory=list)
    records: list[GapRecord] = field(default_factory=list)
    """Ledger rows written with the message."""


@dataclass(slots=True)
class FollowUp:
    """Events and rows a commit showed, for a job of their own (and the newest stored seq,
    when a late message's commit left the concentrator's mark on its own number)."""

    events: list[Event] = field(default_factory=list)
    records: list[GapRecord] = field(default_factory=list)
    mark: ConcentratorMark | None = None

    def __bool__(self) -> bool:
        return bool(self.events or self.records or self.mark)


class SequenceTracker:
    """Each concentrator's newest ``seq``, and what its next one implies."""

    def __init__(
        self,
        marks: Mapping[str, tuple[int, int]],
        *,
        shared: bool = False,
        gaps: SeqGaps | None = None,
        limit: int = SEQ_GAP_MAX,
    ) -> None:
        self._stored = dict(marks)
        """Newest (seq, batch ms) stored per concentrator, in commit order."""
        self._last = dict(marks)
        """The same, counting the messages submitted and not yet committed."""
        self._pending: Counter[str] = Counter()
        self._undecided: Counter[str] = Counter()
        self.shared = shared
        """Seq gaps are not reported: other gateways take part of the messages."""
        self.gaps = None if shared else gaps
        self.limit = limit

    # -- as a message is submitted -------------------------------------------------------

    def plan(self, mark: ConcentratorMark, now_ms: int) -> tuple[SeqPlan, ConcentratorMark]:
        """Plan a message being submitted (call in arrival order); returns the plan (its
        events and rows go into the message's job) and the mark the job stores: a late
        message leaves the concentrator's newest seq where it was."""
        gw = mark.gw
        self._pending[gw] += 1
        prev = self._last.get(gw)
        back = prev is not None and mark.seq <= prev[0]  # a late message is always behind
        if back and self.gaps is not None and (rec := self.gaps.holding(gw, mark.seq)):
            new, events = self.gaps.arrived(rec.id, mark.seq, now_ms)
            plan = SeqPlan(mark, late=mark.seq, before=rec, events=events, records=[new])
            assert prev is not None
            return plan, ConcentratorMark(gw, prev[0], prev[1], mark.topic)
        if self.shared or self._undecided[gw] or back:
            self._undecided[gw] += 1
            return SeqPlan(mark, deferred=True), mark
        plan = SeqPlan(mark, base=None if prev is None else prev[0])
        plan.events, plan.records = self._forward(prev, mark, now_ms)
        self._last[gw] = (mark.seq, mark.ts_ms)
        return plan, mark

    # -- once its commit finished ----------------------------------------------------------

    def settled(self, plan: SeqPlan, stored: bool, now_ms: int) -> FollowUp:
        """The message of ``plan`` committed: ``stored``, or not (a repeat, refused, or
        never, as the ingest stopped). Returns what must still be written."""
        gw = plan.mark.gw
        self._pending[gw] -= 1
        out = FollowUp()
        if plan.deferred:
            self._undecided[gw] -= 1
            if stored:
                out = self._decide(plan.mark, now_ms)
        elif plan.late is not None and plan.before is not None and self.gaps is not None:
            if stored:
                self.gaps.committed(plan.records)
            elif (undone := self.gaps.undo(plan.before, plan.records[0], plan.late)) is not None:
                out.records.append(undone)
        elif not stored:
            for rec in plan.records:
                if self.gaps is not None:
                    self.gaps.drop(rec.id)
        else:
            newest = self._stored.get(gw)
            if (None if newest is None else newest[0]) == plan.base:
                self._stored[gw] = (plan.mark.seq, plan.mark.ts_ms)
                if self.gaps is not None:
                    self.gaps.committed(plan.records)
            else:
                # Planned after a message that was not stored after all (a repeat that
                # moved the count): its rows are written; decide it again from the truth.
                if self.gaps is not None:
                    self.gaps.committed(plan.records)
                out = self._decide(plan.mark, now_ms)
        # Nothing of this concentrator in flight, or the last undecided one settled (only
        # late messages can be in flight then): plan the next from what is stored.
        caught_up = not self._pending[gw] or (plan.deferred and not self._undecided[gw])
        if caught_up:
            if gw in self._stored:
                self._last[gw] = self._stored[gw]
            else:  # nothing of it stored yet
                self._last.pop(gw, None)
        return out

    def _decide(self, mark: ConcentratorMark, now_ms: int) -> FollowUp:
        """What a stored message means against what was stored before it."""
        gw = mark.gw
        prev = self._stored.get(gw)
        out = FollowUp()
        if prev is not None and mark.seq <= prev[0]:
            if self.gaps is not None and (rec := self.gaps.holding(gw, mark.seq)) is not None:
                new, out.events = self.gaps.arrived(rec.id, mark.seq, now_ms)
                out.records = [new]
                if not self._pending[gw]:  # its commit set the mark back to its own seq
                    out.mark = ConcentratorMark(gw, prev[0], prev[1], mark.topic)
                return out
            out.events = [self._reset(prev[0], mark, now_ms)]
            if self.gaps is not None:
                records, events = self.gaps.close(
                    gw, f"the concentrator's seq restarted at {mark.seq}", now_ms
                )
                out.records += records
                out.events += events
        else:
            out.events, out.records = self._forward(prev, mark, now_ms)
        self._stored[gw] = (mark.seq, mark.ts_ms)
        return out

    # -- the policy ------------------------------------------------------------------------

    def _forward(
        self, prev: tuple[int, int] | None, mark: ConcentratorMark, now_ms: int
    ) -> tuple[list[Event], list[GapRecord]]:
        """A message numbered after the newest: nothing, a gap, or a new count."""
        if prev is None or mark.seq == prev[0] + 1 or self.shared:
            return [], []
        first, last = prev[0] + 1, mark.seq - 1
        detail: Detail = {"topic": mark.topic, "previous_seq": prev[0], "seq": mark.seq}
        if last - first + 1 > self.limit:
            reason = (
                f"concentrator seq jumped from {prev[0]} to {mark.seq}, more than "
                f"{self.limit} ahead: taken as a new count, no gap filed"
            )
            detail["limit"] = self.limit
            return [Event(EventKind.COUNTER_RESET, now_ms, mark.gw, reason, detail)], []
        span = f"missing seq {first}..{last}" if last > first else f"missing seq {first}"
        events = [
            Event(
                EventKind.NETWORK_GAP,
                now_ms,
                mark.gw,
                span,
                {**detail, "missing_first": first, "missing_last": last},
            )
        ]
        if self.gaps is None:
            return events, []
        rec, opened = self.gaps.open(mark.gw, first, last, prev[1], mark.ts_ms, now_ms)
        return [*events, opened], [rec]

    @staticmethod
    def _reset(prev: int, mark: ConcentratorMark, now_ms: int) -> Event:
        # Not a repeat (that would not have been stored): the counter started again, or
        # the concentrator sent a different batch under an old number.
        return Event(
            EventKind.COUNTER_RESET,
            now_ms,
            mark.gw,
            f"concentrator seq restarted at {mark.seq} after {prev}",
            {"topic": mark.topic, "previous_seq": prev, "seq": mark.seq},
        )
