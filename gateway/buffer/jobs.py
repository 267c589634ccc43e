"""What callers hand the buffer: write jobs, their outcome, and the interface to submit them."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from gateway.buffer.rows import (
    ConcentratorMark,
    GapRow,
    QuarantineEntry,
    ReadingValues,
    Reference,
)
from gateway.model import Event, EventKind


class Outcome(enum.Enum):
    """What became of one job."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    """Its ``once`` key was stored before: only its ``repeat_events`` were stored."""
    REJECTED = "rejected"
    """It could not be stored (``reason`` says why); it was quarantined instead."""


@dataclass(slots=True)
class WriteJob:
    """One caller's contribution to a group commit."""

    rows: Sequence[ReadingValues] = ()
    """Readings, in the write path's one shape (see :data:`gateway.model.ReadingValues`)."""
    events: Sequence[Event] = ()
    mark: ConcentratorMark | None = None
    quarantine: Sequence[QuarantineEntry] = ()
    cursor: tuple[str, int] | None = None
    refs: Sequence[Reference] = ()
    """Validation references to keep across restarts (the newest per meter and key wins)."""
    gaps: Sequence[GapRow] = ()
    """Gap-ledger rows to write (insert or replace by id) with this job's readings."""
    once: tuple[str, bytes] | None = None
    """``(scope, key)``: store the job only if this key was never stored in its scope (a
    concentrator message's digest). A repeat stores ``repeat_events`` instead and counts."""
    repeat_events: Sequence[Event] = ()
    origin: str = "buffer"
    """Who made the job (``ingest``, ``poll``...): names a quarantine entry if it is refused."""
    subject: str = ""
    """What the job is about (topic, bus): names a quarantine entry if it is refused."""
    outcome: Outcome = Outcome.ACCEPTED
    reason: str = ""
    """Why the job was rejected (``outcome`` is ``REJECTED``)."""

    def size(self) -> int:
        return (
            len(self.rows)
            + len(self.events)
            + len(self.quarantine)
            + len(self.refs)
            + len(self.gaps)
            + 1
        )

    def refusal(self, error: str) -> WriteJob:
        """What is stored instead of this job when it cannot be: a quarantine entry that
        keeps its content for inspection (the rows as JSON), and an event, so that nothing
        vanishes."""
        reason = error.split(": ", 1)[-1] if error.startswith("buffer ") else error
        mark = self.mark
        content = {
            "mark": None if mark is None else [mark.gw, str(mark.seq), mark.ts_ms, mark.topic],
            "rows": [[str(v) for v in row] for row in self.rows[:200]],
        }
        subject = self.subject or (mark.topic if mark is not None else self.origin)
        entry = QuarantineEntry(
            self.origin,
            subject,
            f"not storable: {reason}",
            orjson.dumps(content),
            kind="unstorable",
        )
        event = Event(
            EventKind.PAYLOAD_REJECTED,
            time.time_ns() // 1_000_000,
            subject,
            f"not storable: {reason}",
            {"origin": self.origin},
        )
        return WriteJob(events=(event,), quarantine=(entry,), origin=self.origin, subject=subject)

    @property
    def stored_events(self) -> Sequence[Event]:
        """The events this job stored, once committed."""
        if self.outcome is Outcome.ACCEPTED:
            return self.events
        return self.repeat_events if self.outcome is Outcome.DUPLICATE else ()


class JobStore(Protocol):
    """Ordered submission of write jobs: the buffer, and what stands in front of it."""

    @property
    def healthy(self) -> bool:
        """False after a failed commit (new messages then wait behind the failed ones)."""
        ...

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]: ...
