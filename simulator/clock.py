"""Simulated time: a start instant and a speed factor, or a clock tests step.

All meters of a simulation share one :class:`SimClock`. Sim time is UTC; each
meter converts it to its own local clock (time zone plus drift).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class SimClock:
    """Simulated UTC time running ``speed`` times faster than real time.

    ``SimClock(start=None)`` starts at the current instant; ``speed=0``
    freezes it, so that only :meth:`advance` moves it (for tests that step
    through a simulated week).
    """

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware (e.g. tzinfo=UTC)")
        if speed < 0:
            raise ValueError(f"SimClock speed must be >= 0, got {speed}")
        self._start = (start or datetime.now(UTC)).timestamp()
        self._real0 = time.monotonic()
        self._offset = 0.0
        self.speed = float(speed)

    @property
    def start(self) -> datetime:
        """The instant the simulation started at."""
        return datetime.fromtimestamp(self._start, UTC)

    def timestamp(self) -> float:
        """Sim time as seconds since the Unix epoch (the cheap form)."""
        return self._start + self._offset + (time.monotonic() - self._real0) * self.speed

    def now(self) -> datetime:
        """Sim time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp(), UTC)

    def advance(self, delta: timedelta | float) -> None:
        """Move sim time forward (or back) by ``delta`` at once."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        self._offset += seconds

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (aware); the speed stays as it is."""
        if when.tzinfo is None:
            raise ValueError("SimClock.set needs an aware datetime")
        self._offset += when.timestamp() - self.timestamp()

    def real_seconds(self, sim_seconds: float) -> float:
        """How long ``sim_seconds`` of sim time take in real time (inf if frozen)."""
        return sim_seconds / self.speed if self.speed > 0 else float("inf")
