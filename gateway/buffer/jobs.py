"""What callers hand the buffer: write jobs, their outcome, and the interface to submit them."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.buffer.rows import ConcentratorMark, QuarantineEntry, ReadingValues, Reference
from gateway.model import Event, Reading


class Outcome(enum.Enum):
    """What became of one job."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    """A concentrator message seen before: nothing stored, safe to acknowledge."""


@dataclass(slots=True)
class WriteJob:
    """One caller's contribution to a group commit."""

    readings: Sequence[Reading] = ()
    events: Sequence[Event] = ()
    rows: Sequence[ReadingValues] = ()
    """Readings already in column form (the concentrator ingest's lean path)."""
    mark: ConcentratorMark | None = None
    quarantine: Sequence[QuarantineEntry] = ()
    cursor: tuple[str, int] | None = None
    refs: Sequence[Reference] = ()
    """Validation references to keep across restarts (the newest per meter and key wins)."""
    outcome: Outcome = Outcome.ACCEPTED
    generated: list[Event] = field(default_factory=list)
    """Events the writer added (network gap, counter restart)."""

    def size(self) -> int:
        return (
            len(self.readings)
            + len(self.rows)
            + len(self.events)
            + len(self.quarantine)
            + len(self.refs)
            + 1
        )


def decimal_text(value: object) -> str:
    """The exact decimal text of a value, never in exponent notation."""
    text = str(value)
    if "E" in text or "e" in text:
        text = format(value, "f")
    return text


class JobStore(Protocol):
    """Ordered submission of write jobs: the buffer, and what stands in front of it."""

    @property
    def healthy(self) -> bool:
        """False after a failed commit (new messages then wait behind the failed ones)."""
        ...

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]: ...
