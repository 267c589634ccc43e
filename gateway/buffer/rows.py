"""What the buffer stores and hands back: row shapes, batches and stats.

Rows read back for forwarding are plain tuples straight from SQLite, not
objects: a forwarder turns hundreds of thousands of them per second into line
protocol or JSON, and building an object per row would cost more than the
sink write itself. The aliases below name each column's position.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.model import ReadingValues

__all__ = ["ReadingValues"]  # the write path's reading shape, stored with a seq (ReadingRow)

ReadingRow = tuple[int, str, str, str, str, int, str, int, str, int, int | None]
"""``(seq, meter, key, value, unit, ts_ms, ts_source, received_ms, source, quality,
interval_s)``; ``value`` is the exact decimal text of the reading."""


Reference = tuple[str, str, int, str]
"""``(meter, key, ts_ms, value)``: the last value the validator compared a register
against, kept in the buffer so that a restart does not forget it."""

GapRow = tuple[
    str, str, str, str, int, int, str, int, int, int, int, int, int, int, int, int, int, str, str
]
"""A gap-ledger row: ``(id, meter, cause, keys_json, start_ms, end_ms, state, interval_s,
expected, recovered, missing, updated_ms, todo_from_ms, todo_to_ms, meter_start_ms,
meter_end_ms, settled, bus, reason)`` (see :class:`gateway.gaps.GapRecord`)."""

EventRow = tuple[int, str, int, str, str, bytes]
"""``(seq, kind, ts_ms, subject, reason, detail_json)``; the detail is JSON as bytes (stored
as a BLOB, read back as the same bytes)."""

READING_COLUMNS = (
    "seq",
    "meter",
    "key",
    "value",
    "unit",
    "ts_ms",
    "ts_source",
    "received_ms",
    "source",
    "quality",
    "interval_s",
)
EVENT_COLUMNS = ("seq", "kind", "ts_ms", "subject", "reason", "detail")


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings and events after a sink's cursor, in sequence order.

    ``upto`` is the sequence the sink's cursor moves to once the batch is
    written: every row with ``seq <= upto`` that still exists is in the batch.
    """

    readings: list[ReadingRow]
    events: list[EventRow]
    upto: int

    def __len__(self) -> int:
        return len(self.readings) + len(self.events)

    @property
    def oldest_received_ms(self) -> int | None:
        """Gateway receive time of the oldest reading in the batch."""
        return min((r[7] for r in self.readings[:1]), default=None)


@dataclass(frozen=True, slots=True)
class ConcentratorMark:
    """Where a concentrator message stands: its id, its ``seq`` and its batch time.

    Stored in the same transaction as the message's readings, so that a
    resent message is recognised after any crash.
    """

    gw: str
    seq: int
    ts_ms: int
    topic: str


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """Something refused for good, kept for inspection."""

    origin: str
    """``ingest`` for concentrator payloads, else the sink's name."""
    subject: str
    """MQTT topic for payloads; meter id or event subject for sink rejections."""
    reason: str
    payload: bytes
    seq: int | None = None
    """Buffer sequence of a row a sink refused."""
    kind: str = ""
    """A short, bounded label of the reason (``json``, ``schema``, ``timestamp``...): the
    quarantine keeps the newest entries of each (origin, kind), so that a flood of one kind
    of junk does not push out the rare ones."""


@dataclass(frozen=True, slots=True)
class SinkStats:
    """Delivery state of one sink."""

    cursor: int
    """Last sequence the sink confirmed."""
    depth: int
    """Rows not yet confirmed by the sink."""
    oldest_unsent_ms: int | None
    """Receive time of the oldest reading the sink has not confirmed, if known."""


@dataclass(frozen=True, slots=True)
class BufferStats:
    """A snapshot of the buffer for ``/status`` and the live view."""

    path: str
    rows: int
    """Readings and events held."""
    bytes: int
    """Size of the database file and its write-ahead log."""
    head_seq: int
    """Last committed sequence."""
    sinks: Mapping[str, SinkStats] = field(default_factory=dict)
    dropped: int = 0
    """Rows dropped by the disk-cap policy, over the database's life."""
    quarantined: int = 0
    """Entries in the quarantine table."""
    commits: int = 0
    """Group commits since open."""
    repeats: int = 0
    """Jobs dropped as repeats of a stored ``once`` key, over the database's life."""
