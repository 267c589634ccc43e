"""The rows just committed, kept in memory for the forwarders that are caught up.

A forwarder that keeps up with the commits asks, a few milliseconds after each
group commit, for exactly the rows that commit stored. Reading them back from
SQLite builds every row again from its pages, which was 14-20% of the gateway's
CPU at 100 readings per message (py-spy, bench/README.md). The committer already
holds those rows as tuples, so it hands them here, and a read that starts inside
the tail is answered from memory with the same :class:`Batch` the database would
give (tests/gateway/buffer/test_tail.py compares the two on random histories).

Anything the tail does not cover (a sink behind it, a sink restarted at its durable
cursor, a reader that is not a registered sink) is read from SQLite as before. The
tail holds a contiguous range of sequences only, at most :data:`TAIL_ROWS` rows, and
only while a sink reads inside it: nothing that those sinks have read, and nothing at
all when every sink is behind it or stalled.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from operator import itemgetter

from gateway.buffer.rows import Batch, EventRow, ReadingRow

TAIL_ROWS = 65_536
"""Most rows (readings and events) kept: about a second of a saturated gateway (a sink
write that stalls for half a second leaves its forwarder 40,000 rows behind at 80,000
readings/s), 15-25 MB at most. A sink further behind than this reads the database."""

_seq = itemgetter(0)


class Tail:
    """Committed rows ``lo..hi`` (every sequence in between that was stored), in order."""

    def __init__(self, head: int) -> None:
        self.lo = head + 1
        self.hi = head
        self._readings: list[ReadingRow] = []
        self._events: list[EventRow] = []

    def __len__(self) -> int:
        return len(self._readings) + len(self._events)

    def add(
        self, first: int, last: int, readings: list[ReadingRow], events: list[EventRow]
    ) -> None:
        """A commit stored sequences ``first..last``: exactly these readings and events."""
        if last < first:
            return  # a commit of cursors or quarantine only: no sequence used
        if first != self.hi + 1:  # something was stored that the tail never saw: restart
            self.clear(first - 1)
        self._readings += readings
        self._events += events
        self.hi = last

    def clear(self, head: int) -> None:
        """Forget every row; the tail starts again after ``head``."""
        self._readings.clear()
        self._events.clear()
        self.lo, self.hi = head + 1, head

    def trim(self, positions: Mapping[str, int]) -> None:
        """Keep only what the sinks reading inside the tail still need (``positions``: sink
        -> last sequence it read), at most :data:`TAIL_ROWS` rows. A sink behind the
        tail's start reads the database and pins nothing; when no sink is inside, the
        tail is emptied."""
        inside = [p for p in positions.values() if p >= self.lo - 1]
        if not inside:
            self.clear(self.hi)
            return
        floor = min(inside)
        if floor >= self.lo:
            self._drop_upto(min(floor, self.hi))
        excess = len(self) - TAIL_ROWS
        if excess > 0:
            seqs = sorted(
                [r[0] for r in self._readings[:excess]] + [e[0] for e in self._events[:excess]]
            )
            self._drop_upto(seqs[excess - 1])
            if max(inside) < self.lo - 1:  # the bound left every sink behind
                self.clear(self.hi)

    def _drop_upto(self, seq: int) -> None:
        del self._readings[: bisect_right(self._readings, seq, key=_seq)]
        del self._events[: bisect_right(self._events, seq, key=_seq)]
        self.lo = seq + 1

    def read(self, after: int, limit: int) -> Batch | None:
        """What the database would return for ``after`` and ``limit``, or ``None`` when
        the tail does not hold every row after ``after``."""
        if not self.lo - 1 <= after < self.hi:
            return None
        i = bisect_right(self._readings, after, key=_seq)
        readings = self._readings[i : i + limit]
        upper = readings[-1][0] if len(readings) == limit else self.hi
        j = bisect_right(self._events, after, key=_seq)
        k = bisect_right(self._events, upper, lo=j, key=_seq)
        events = self._events[j : min(k, j + limit)]
        if len(events) == limit and events[-1][0] < upper:
            upper = events[-1][0]
            readings = [r for r in readings if r[0] <= upper]
        return Batch(readings, events, upper)
