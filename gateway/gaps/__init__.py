"""The gap ledger: every interval a meter's data misses, accounted for to the interval."""

from gateway.gaps.ledger import GapLedger, file_gap, load_gaps, read_gaps, watch_filed
from gateway.gaps.network import SEQ_GAP_MAX, SeqGaps, age_seq_gaps
from gateway.gaps.record import (
    GapCause,
    GapRecord,
    GapState,
    boundary,
    expected_intervals,
    gap_event,
)

__all__ = [
    "SEQ_GAP_MAX",
    "GapCause",
    "GapLedger",
    "GapRecord",
    "GapState",
    "SeqGaps",
    "age_seq_gaps",
    "boundary",
    "expected_intervals",
    "file_gap",
    "gap_event",
    "load_gaps",
    "read_gaps",
    "watch_filed",
]
