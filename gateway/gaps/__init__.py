"""The gap ledger: every interval a meter's data misses, accounted for to the interval."""

from gateway.gaps.ledger import GapLedger, file_gap, load_gaps, read_gaps, watch_filed
from gateway.gaps.record import (
    GapCause,
    GapRecord,
    GapState,
    boundary,
    expected_intervals,
)

__all__ = [
    "GapCause",
    "GapLedger",
    "GapRecord",
    "GapState",
    "boundary",
    "expected_intervals",
    "file_gap",
    "load_gaps",
    "read_gaps",
    "watch_filed",
]
