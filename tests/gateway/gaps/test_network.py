"""Concentrator seq gaps, the pure part: what a message's seq files, counts and closes.

Every test runs on a fixed clock (``T0``): the wait is passed as a time, never slept.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from gateway.buffer import ConcentratorMark
from gateway.gaps import SEQ_GAP_MAX, GapCause, GapLedger, GapRecord, GapState, SeqGaps
from gateway.ingest.sequence import SeqPlan, SequenceTracker
from gateway.metrics import Metrics
from gateway.model import EventKind
from gateway.status.render import gaps_table

T0 = 1_790_000_000_000
HOUR = 3_600_000
TOPIC = "meters/v1/c1/readings"


def mark(seq: int, ts_ms: int | None = None, gw: str = "c1") -> ConcentratorMark:
    return ConcentratorMark(gw, seq, T0 + seq * 60_000 if ts_ms is None else ts_ms, TOPIC)


def tracker(
    marks: dict[str, tuple[int, int]] | None = None, *, shared: bool = False, wait_s: float = 3600
) -> tuple[SequenceTracker, SeqGaps, GapLedger]:
    ledger = GapLedger(Metrics())
    gaps = SeqGaps(wait_s, ledger)
    return SequenceTracker(marks or {}, shared=shared, gaps=gaps), gaps, ledger


def stored(t: SequenceTracker, seq: int, now: int = T0) -> tuple[SeqPlan, ConcentratorMark]:
    """Plan a message and settle it as stored (its commit landed)."""
    plan, m = t.plan(mark(seq), now)
    assert not t.settled(plan, True, now)
    return plan, m


def kinds(plan: SeqPlan) -> list[str]:
    return [e.kind.value for e in plan.events]


def test_a_jump_files_a_gap_with_the_message_that_revealed_it() -> None:
    t, gaps, ledger = tracker()
    stored(t, 1)
    plan, m = t.plan(mark(5), T0 + 10)
    # The row and its events go into the message's own job (same commit).
    assert kinds(plan) == ["network_gap", "gap_opened"]
    assert plan.events[0].reason == "missing seq 2..4"  # the event users alert on, as before
    [rec] = plan.records
    assert (rec.meter, rec.cause, rec.state) == ("c1", GapCause.CONCENTRATOR_SEQ, GapState.OPEN)
    assert (rec.expected, rec.recovered, rec.missing) == (3, 0, 3)
    assert rec.seqs == (2, 4)
    # The time between the message before it and the one that revealed it.
    assert (rec.start_ms, rec.end_ms) == (T0 + 60_000, T0 + 5 * 60_000)
    assert rec.updated_ms == T0 + 10
    assert m == mark(5)
    assert not ledger.gaps  # the ledger view follows the commit, not the plan
    t.settled(plan, True, T0 + 10)
    assert ledger.gaps[rec.id] == rec
    assert gaps.active() == [rec]


def test_late_messages_count_and_the_last_one_fills_the_gap() -> None:
    t, gaps, ledger = tracker()
    stored(t, 1)
    [rec] = stored(t, 5)[0].records
    late3, m3 = t.plan(mark(3), T0 + 20)
    # A late message keeps the concentrator's newest seq where it was (5, not 3).
    assert (m3.seq, m3.ts_ms) == (5, mark(5).ts_ms)
    assert kinds(late3) == ["gap_filling"]
    [r3] = late3.records
    assert (r3.state, r3.recovered, r3.todo_from_ms, r3.todo_to_ms) == (GapState.FILLING, 1, 1, 4)
    t.settled(late3, True, T0 + 20)
    late2, _ = t.plan(mark(2), T0 + 30)
    [r2] = late2.records
    # 2 and 3 came: only 4 is still missing, and a restart knows it from the row.
    assert (r2.recovered, r2.todo_from_ms, r2.todo_to_ms, r2.settled) == (2, 3, 4, 2)
    assert not late2.events  # no state change
    t.settled(late2, True, T0 + 30)
    late4, _ = t.plan(mark(4), T0 + 40)
    assert kinds(late4) == ["gap_filled"]
    [r4] = late4.records
    assert (r4.state, r4.recovered, r4.missing) == (GapState.FILLED, 3, 0)
    t.settled(late4, True, T0 + 40)
    assert gaps.active() == []
    assert ledger.gaps[rec.id].state is GapState.FILLED
    # The next message follows 5: no gap, no reset.
    plan, _ = stored(t, 6)
    assert not plan.events
    assert not plan.records


def test_after_the_wait_a_gap_is_partly_filled_or_unrecoverable() -> None:
    t, gaps, _ = tracker(wait_s=3600)
    stored(t, 1, T0)
    [some] = stored(t, 5, T0)[0].records  # 2..4
    [none] = stored(t, 9, T0)[0].records  # 6..8
    stored(t, 3, T0 + HOUR // 2)  # a late one: the wait of its gap starts again
    assert gaps.due(T0 + HOUR - 1) == ([], [])
    records, events = gaps.due(T0 + HOUR)
    assert [(r.id, r.state) for r in records] == [(none.id, GapState.UNRECOVERABLE)]
    assert events[0].kind is EventKind.GAP_UNRECOVERABLE
    assert events[0].reason == "none of the 3 missing message(s) came: waited 3600 s for them"
    records, events = gaps.due(T0 + HOUR + HOUR // 2)
    [closed] = records
    assert (closed.id, closed.state, closed.recovered, closed.missing) == (
        some.id,
        GapState.PARTLY_FILLED,
        1,
        2,
    )
    assert events[0].kind is EventKind.GAP_PARTLY_FILLED
    assert events[0].detail["missing"] == 2
    assert "1 of 3 missing message(s) came late, 2 never came (within seq 2..4)" in closed.reason
    assert gaps.active() == []
    # A message that comes after its gap closed changes nothing (and is not a reset
    # either: it is older than the newest).
    plan, _ = t.plan(mark(4), T0 + 2 * HOUR)
    assert plan.deferred
    assert not plan.records


def test_a_restart_takes_the_gaps_up_from_the_ledger() -> None:
    t, gaps, _ = tracker()
    stored(t, 1)
    stored(t, 6)  # 2..5
    stored(t, 2, T0 + 5)
    stored(t, 4, T0 + 6)
    [row] = gaps.active()
    # What the buffer gives back at the next start: the rows and the newest marks.
    again = GapRecord.from_row(row.row())
    t2, gaps2, _ = tracker({"c1": (6, mark(6).ts_ms)})
    assert gaps2.take([again]) == 1
    assert gaps2.take([again]) == 0  # a second scan does not add it twice
    plan, _ = t2.plan(mark(2), T0 + 7)  # came before the restart: outside the span left
    assert plan.deferred
    assert not plan.records
    t2.settled(plan, False, T0 + 7)  # a repeat, as a broker resends
    for seq in (3, 5):
        plan, _ = t2.plan(mark(seq), T0 + 8)
        t2.settled(plan, True, T0 + 8)
    assert plan.records[0].state is GapState.FILLED
    assert plan.records[0].recovered == 4


def test_a_resend_of_a_stored_message_is_not_a_counter_reset() -> None:
    t, gaps, _ = tracker()
    stored(t, 1)
    stored(t, 5)
    # After a reconnect the broker resends 5 (stored, its ack lost), then 6 and 8 come.
    resend, m = t.plan(mark(5), T0)
    assert resend.deferred
    assert m == mark(5)
    p6, _ = t.plan(mark(6), T0)
    p8, _ = t.plan(mark(8), T0)
    assert p6.deferred
    assert p8.deferred
    assert not t.settled(resend, False, T0)  # a repeat: nothing happened
    assert not t.settled(p6, True, T0)
    follow = t.settled(p8, True, T0)
    assert [e.kind.value for e in follow.events] == ["network_gap", "gap_opened"]
    assert [r.seqs for r in follow.records] == [(7, 7)]
    assert len(gaps.active()) == 2
    # Caught up: the next message is planned again (its row in its own commit).
    p9, _ = t.plan(mark(9), T0)
    assert not p9.deferred
    assert not p9.events


def test_a_counter_reset_closes_the_concentrators_gaps() -> None:
    t, gaps, _ = tracker()
    stored(t, 10)
    stored(t, 20)
    stored(t, 12)  # one late message of 11..19
    plan, _ = t.plan(mark(0), T0)
    assert plan.deferred
    follow = t.settled(plan, True, T0)
    assert [e.kind.value for e in follow.events] == ["counter_reset", "gap_partly_filled"]
    assert follow.events[0].reason == "concentrator seq restarted at 0 after 20"
    assert follow.records[0].reason.endswith("the concentrator's seq restarted at 0")
    assert gaps.active() == []
    # The new count's numbers are not late messages of the old gap.
    plan, _ = t.plan(mark(1), T0)
    assert not plan.records
    assert not plan.events


def test_a_shared_subscription_files_no_gap() -> None:
    t, gaps, _ = tracker(shared=True)
    stored(t, 1)
    plan, _ = t.plan(mark(5), T0)
    follow = t.settled(plan, True, T0)
    assert not plan.records
    assert not follow
    assert gaps.active() == []
    # A restart is still a restart.
    plan, _ = t.plan(mark(0), T0)
    assert [e.kind.value for e in t.settled(plan, True, T0).events] == ["counter_reset"]


@pytest.mark.parametrize("wild", [2**63 - 1, 5 + SEQ_GAP_MAX + 2])
def test_a_wild_jump_is_a_new_count_not_a_gap_of_that_size(wild: int) -> None:
    t, gaps, ledger = tracker()
    stored(t, 5)
    plan, _ = t.plan(mark(wild), T0)
    assert not plan.records
    [event] = plan.events
    assert event.kind is EventKind.COUNTER_RESET
    assert event.reason == (
        f"concentrator seq jumped from 5 to {wild}, more than {SEQ_GAP_MAX} ahead: "
        "taken as a new count, no gap filed"
    )
    t.settled(plan, True, T0)
    # Back to normal numbers: a restart, and nothing huge anywhere.
    plan, _ = t.plan(mark(6), T0)
    assert [e.kind.value for e in t.settled(plan, True, T0).events] == ["counter_reset"]
    assert gaps.active() == []
    assert not ledger.gaps
    # The largest jump that is still a gap is counted like any other.
    stored(t, 7)
    plan, _ = t.plan(mark(7 + SEQ_GAP_MAX + 1), T0)
    [rec] = plan.records
    assert rec.expected == SEQ_GAP_MAX


def test_concentrator_gaps_render_in_status_and_the_cli() -> None:
    t, _, ledger = tracker()
    stored(t, 1)
    stored(t, 5)
    stored(t, 3, T0 + 5)
    doc = ledger.to_json(T0 + 10)
    assert doc["counts"]["filling"] == 1  # type: ignore[index]
    [g] = doc["gaps"]  # type: ignore[misc]
    assert g["meter"] == "c1"
    assert g["cause"] == "concentrator_seq"
    assert (g["expected"], g["recovered"], g["missing"]) == (3, 1, 2)
    assert (g["seq_first"], g["seq_last"], g["counted_in"]) == (2, 4, "messages")
    assert g["progress"] == 0.333  # messages came, in any order
    out = io.StringIO()
    Console(file=out, width=140, color_system=None).print(gaps_table({"gaps": doc}))
    line = next(x for x in out.getvalue().splitlines() if "concentrator_seq" in x)
    assert "c1" in line
    assert "filling" in line
    assert "1/3" in line
    assert "33 %" in line


def test_a_late_message_that_was_a_repeat_is_taken_back() -> None:
    t, gaps, _ = tracker()
    stored(t, 1)
    [opened] = stored(t, 4)[0].records  # 2..3
    # 2 comes late, but its bytes were stored before (the buffer says: a repeat).
    plan, _ = t.plan(mark(2), T0 + 5)
    follow = t.settled(plan, False, T0 + 5)
    [back] = follow.records
    assert (back.state, back.recovered, back.todo_from_ms, back.todo_to_ms) == (
        GapState.OPEN,
        0,
        1,
        3,
    )
    assert back.updated_ms == opened.updated_ms  # a repeat does not restart the wait
    # The last missing message, a repeat too: the gap it would have filled stays open.
    stored(t, 2, T0 + 6)
    plan, _ = t.plan(mark(3), T0 + 7)
    assert plan.records[0].state is GapState.FILLED
    assert gaps.active() == []
    follow = t.settled(plan, False, T0 + 7)
    [again] = gaps.active()
    assert follow.records == [again]
    assert (again.state, again.recovered) == (GapState.FILLING, 1)
