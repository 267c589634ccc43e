"""The durable store-and-forward buffer (SQLite WAL, group commit, a cursor per sink)."""

from gateway.buffer.jobs import JobStore, Outcome, WriteJob
from gateway.buffer.rows import (
    Batch,
    BufferStats,
    ConcentratorMark,
    EventRow,
    GapRow,
    QuarantineEntry,
    ReadingRow,
    ReadingValues,
    Reference,
    SinkStats,
)
from gateway.buffer.schema import BufferError
from gateway.buffer.store import Buffer

__all__ = [
    "Batch",
    "Buffer",
    "BufferError",
    "BufferStats",
    "ConcentratorMark",
    "EventRow",
    "GapRow",
    "JobStore",
    "Outcome",
    "QuarantineEntry",
    "ReadingRow",
    "ReadingValues",
    "Reference",
    "SinkStats",
    "WriteJob",
]
