"""Wall-clock aligned ticks, coalescing of missed ticks, and bus utilisation."""

from __future__ import annotations

import math
import time
from collections import deque


def next_tick(interval: float, after: float) -> float:
    """The first multiple of ``interval`` (epoch seconds) strictly after ``after``."""
    return (math.floor(after / interval) + 1) * interval


def reschedule(interval: float, served_due: float, now: float) -> tuple[float, int]:
    """The next due time after serving the tick due at ``served_due``, and ticks skipped.

    Normally the next aligned tick. When the poll ran so late that the next
    tick has passed too, every missed tick is coalesced into one poll due at
    once (the latest tick not after ``now``): late, but never queued up.
    """
    nxt = next_tick(interval, served_due)
    if nxt > now:
        return nxt, 0
    latest = math.floor(now / interval) * interval
    skipped = round((latest - nxt) / interval)
    return latest, skipped


class Utilisation:
    """Share of the last ``window`` seconds the bus was busy.

    The busy time of the spans in the window is kept as a running sum: a bus polled a
    few hundred times a second holds tens of thousands of spans in a minute, and adding
    them all up at every poll cost more than the poll itself.
    """

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._started = time.monotonic()
        self._spans: deque[tuple[float, float]] = deque()
        self._busy = 0.0

    def add(self, start: float, end: float) -> None:
        """Record a busy span (monotonic seconds)."""
        self._spans.append((start, end))
        self._busy += end - start

    def ratio(self, now: float | None = None) -> float:
        """Busy share of the window (or of the time since start, if shorter), 0..1."""
        now = time.monotonic() if now is None else now
        horizon = now - self.window
        spans = self._spans
        while spans and spans[0][1] <= horizon:
            start, end = spans.popleft()
            self._busy -= end - start
        if not spans:
            self._busy = 0.0  # no rounding left over from the sum
        busy = self._busy
        if spans and spans[0][0] < horizon:  # the oldest span straddles the horizon
            busy -= horizon - spans[0][0]
        span = min(self.window, now - self._started)
        return 0.0 if span <= 0 else max(0.0, min(1.0, busy / span))
