"""One gap of the ledger: what is missing, why, and how far its backfill got.

A gap is a span of a meter's interval data (start exclusive, end inclusive, ms
UTC by the gateway's clock) that live polls did not cover. The same span as the
meter's clock saw it (``meter_start_ms``/``meter_end_ms``, mapped through the
drift measured before and after) is where its records are looked for and
counted. The ledger row is written in the same transaction as the readings
that change it (``WriteJob.gaps``), so a crash never stores records without
the progress that says they are there, or the reverse.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from gateway.buffer.rows import GapRow
from gateway.model import Event, EventKind


class GapState(enum.StrEnum):
    """Where a gap stands."""

    OPEN = "open"
    """Noticed; nothing read yet (or the meter is away again)."""
    FILLING = "filling"
    """Its backfill is reading the meter's records."""
    FILLED = "filled"
    """Every expected interval is present."""
    PARTLY_FILLED = "partly_filled"
    """The records are read; some intervals are still missing (the counts say how many)."""
    UNRECOVERABLE = "unrecoverable"
    """The meter keeps no records that could fill it."""

    @property
    def active(self) -> bool:
        """True while a backfill is still to run (open or filling)."""
        return self in (GapState.OPEN, GapState.FILLING)


class GapCause(enum.StrEnum):
    """Why a gap opened."""

    METER_OFFLINE = "meter_offline"
    BUS_FAULT = "bus_fault"
    GATEWAY_DOWN = "gateway_down"
    NOT_STORED = "not_stored"
    CONCENTRATOR_SEQ = "concentrator_seq"
    MANUAL = "manual"
    """Filed by hand (``metergw backfill``)."""


def expected_intervals(start_ms: int, end_ms: int, interval_s: int) -> int:
    """Interval boundaries in ``(start_ms, end_ms]`` on a grid of ``interval_s``."""
    step = max(1, interval_s) * 1000
    return max(0, end_ms // step - start_ms // step)


def boundary(ts_ms: int, interval_s: int) -> int:
    """The index of the grid boundary nearest ``ts_ms`` (a record a few ms off still counts)."""
    step = max(1, interval_s) * 1000
    return (ts_ms + step // 2) // step


@dataclass(frozen=True, slots=True)
class GapRecord:
    """One row of the gap ledger.

    ``todo_from_ms``/``todo_to_ms`` are the backfill's progress: the part of the gap
    whose records are still to read, in meter time (a resumed backfill reads only that
    part). Expected and recovered intervals are counted on the meter-time span.
    ``settled`` counts recovered intervals outside that part, so a resumed backfill
    counts on from there without counting an interval twice.
    """

    id: str
    meter: str
    cause: GapCause
    keys: tuple[str, ...]
    start_ms: int
    end_ms: int
    state: GapState
    interval_s: int
    expected: int
    recovered: int
    updated_ms: int
    todo_from_ms: int
    todo_to_ms: int
    meter_start_ms: int
    meter_end_ms: int
    settled: int = 0
    bus: str = ""
    reason: str = ""

    @property
    def missing(self) -> int:
        """Expected intervals not (yet) present."""
        return max(0, self.expected - self.recovered)

    @property
    def seqs(self) -> tuple[int, int] | None:
        """A concentrator gap's missing seq numbers, first and last (``None`` for a meter's
        gap). Its counter is its clock: ``meter_start_ms``/``meter_end_ms`` hold the seq
        span (start exclusive, end inclusive) and ``todo_*`` the part still missing, counted
        in messages (see :mod:`gateway.gaps.network`)."""
        if self.cause is not GapCause.CONCENTRATOR_SEQ:
            return None
        return self.meter_start_ms + 1, self.meter_end_ms

    @classmethod
    def opened(
        cls,
        meter: str,
        cause: GapCause,
        keys: Sequence[str],
        start_ms: int,
        end_ms: int,
        interval_s: int,
        now_ms: int,
        bus: str = "",
        meter_span: tuple[int, int] | None = None,
        gap_id: str | None = None,
    ) -> GapRecord:
        """A new gap, nothing recovered yet; ``meter_span`` is the span in meter time
        (the same as ``start_ms, end_ms`` when the meter's drift is unknown)."""
        m_start, m_end = meter_span or (start_ms, end_ms)
        return cls(
            gap_id or f"{meter}@{start_ms}",
            meter,
            cause,
            tuple(keys),
            start_ms,
            end_ms,
            GapState.OPEN,
            interval_s,
            expected_intervals(m_start, m_end, interval_s),
            0,
            now_ms,
            m_start,
            m_end,
            m_start,
            m_end,
            bus=bus,
        )

    def but(self, **changes: object) -> GapRecord:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def row(self) -> GapRow:
        """The ledger row, in column order (see :data:`gateway.buffer.rows.GapRow`)."""
        return (
            self.id,
            self.meter,
            self.cause.value,
            json.dumps(list(self.keys)),
            self.start_ms,
            self.end_ms,
            self.state.value,
            self.interval_s,
            self.expected,
            self.recovered,
            self.missing,
            self.updated_ms,
            self.todo_from_ms,
            self.todo_to_ms,
            self.meter_start_ms,
            self.meter_end_ms,
            self.settled,
            self.bus,
            self.reason,
        )

    @classmethod
    def from_row(cls, row: Sequence[object]) -> GapRecord:
        """The record of a ledger row (``SELECT`` of :data:`GAP_COLUMNS`)."""
        (gid, meter, cause, keys, start, end, state, interval, expected, recovered, _missing,
         updated, todo_from, todo_to, m_start, m_end, settled, bus, reason) = row  # fmt: skip
        return cls(
            str(gid),
            str(meter),
            GapCause(str(cause)),
            tuple(json.loads(str(keys))),
            int(str(start)),
            int(str(end)),
            GapState(str(state)),
            int(str(interval)),
            int(str(expected)),
            int(str(recovered)),
            int(str(updated)),
            int(str(todo_from)),
            int(str(todo_to)),
            int(str(m_start)),
            int(str(m_end)),
            int(str(settled)),
            str(bus),
            str(reason),
        )

    def to_json(self) -> dict[str, object]:
        """For ``/status``: the counts, the state and how far the backfill got."""
        span = max(1, self.meter_end_ms - self.meter_start_ms)
        left = self.todo_to_ms - self.todo_from_ms
        progress = 1.0 if not self.state.active else max(0.0, 1 - left / span)
        seqs = self.seqs
        if seqs is not None and self.state.active:  # messages came in any order
            progress = self.recovered / max(1, self.expected)
        extra: dict[str, object] = {} if seqs is None else {"counted_in": "messages"}
        if seqs is not None:
            extra["seq_first"], extra["seq_last"] = seqs
        return {
            "id": self.id,
            "meter": self.meter,
            "bus": self.bus,
            "cause": self.cause.value,
            "state": self.state.value,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "interval_s": self.interval_s,
            "expected": self.expected,
            "recovered": self.recovered,
            "missing": self.missing,
            "progress": round(min(1.0, progress), 3),
            "updated_ms": self.updated_ms,
            "reason": self.reason,
            **extra,
        }


GAP_COLUMNS = (
    "id, meter, cause, keys, start_ms, end_ms, state, interval_s, expected, recovered, "
    "missing, updated_ms, todo_from_ms, todo_to_ms, meter_start_ms, meter_end_ms, settled, "
    "bus, reason"
)


_STATE_EVENT = {
    GapState.OPEN: EventKind.GAP_OPENED,
    GapState.FILLING: EventKind.GAP_FILLING,
    GapState.FILLED: EventKind.GAP_FILLED,
    GapState.PARTLY_FILLED: EventKind.GAP_PARTLY_FILLED,
    GapState.UNRECOVERABLE: EventKind.GAP_UNRECOVERABLE,
}


def gap_event(rec: GapRecord, reason: str, now_ms: int, **extra: str | int | bool) -> Event:
    """The event of ``rec``'s state change, with its counts."""
    detail: dict[str, str | int | float | bool | None] = {
        "gap": rec.id,
        "cause": rec.cause.value,
        "from_ms": rec.start_ms,
        "to_ms": rec.end_ms,
        "interval_s": rec.interval_s,
        "expected": rec.expected,
        "recovered": rec.recovered,
        "missing": rec.missing,
        **extra,
    }
    return Event(_STATE_EVENT[rec.state], now_ms, rec.meter, reason, detail)
