"""A meter's health: unknown -> online -> suspect -> offline, and retry backoff.

Misses are counted in consecutive failed polls. An offline meter is retried
at growing intervals (doubling from its shortest poll interval up to
``backoff_max``), so that a dead meter costs a bounded share of the bus.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gateway.model import Event, EventKind


class MeterState(enum.StrEnum):
    """Where a meter stands, as the scheduler sees it."""

    UNKNOWN = "unknown"
    ONLINE = "online"
    SUSPECT = "suspect"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one poll result changed."""

    events: tuple[Event, ...] = ()
    returned_from_ms: int | None = None
    """When the meter comes back from offline: its last good poll before (ms UTC)."""


@dataclass(slots=True)
class _Saved:
    state: MeterState
    misses: int
    last_error: str | None
    retries: int


@dataclass(slots=True)
class MeterHealth:
    """The state machine of one meter; times are ms UTC (events) and monotonic s (retries)."""

    meter_id: str
    suspect_after: int = 1
    offline_after: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    state: MeterState = MeterState.UNKNOWN
    misses: int = 0
    last_ok_ms: int | None = None
    last_error: str | None = None
    offline_retries: int = 0
    retry_at: float = 0.0
    """Monotonic time before which an offline meter is not polled."""
    _saved: _Saved | None = field(default=None, repr=False)

    def success(self, ts_ms: int) -> Outcome:
        """A poll got an answer (even an error reply: the meter is alive)."""
        old = self.state
        returned = self.last_ok_ms if old is MeterState.OFFLINE else None
        self.state = MeterState.ONLINE
        self.misses = 0
        self.offline_retries = 0
        self.retry_at = 0.0
        self.last_ok_ms = ts_ms
        if old is MeterState.ONLINE:
            return Outcome()
        reason = "first answer" if old is MeterState.UNKNOWN else f"answered again after {old}"
        ev = Event(EventKind.METER_ONLINE, ts_ms, self.meter_id, reason, {"previous": str(old)})
        return Outcome((ev,), returned)

    def failure(self, ts_ms: int, now: float, error: str) -> Outcome:
        """A poll got no usable answer; ``now`` is monotonic seconds."""
        self.misses += 1
        self.last_error = error
        old = self.state
        if self.misses >= self.offline_after:
            new = MeterState.OFFLINE
        elif self.misses >= self.suspect_after:
            new = MeterState.SUSPECT
        else:
            new = old
        if new is MeterState.OFFLINE:
            delay = min(self.backoff_base * (2**self.offline_retries), self.backoff_max)
            self.offline_retries += 1
            self.retry_at = now + delay
        self.state = new
        if new is old:
            return Outcome()
        kind = EventKind.METER_OFFLINE if new is MeterState.OFFLINE else EventKind.METER_SUSPECT
        detail: dict[str, str | int | float | bool | None] = {"misses": self.misses}
        if self.last_ok_ms is not None:
            detail["last_ok_ms"] = self.last_ok_ms
        return Outcome((Event(kind, ts_ms, self.meter_id, error, detail),))

    def checkpoint(self) -> None:
        """Remember the state, to undo failures later blamed on the whole bus."""
        self._saved = _Saved(self.state, self.misses, self.last_error, self.offline_retries)

    def rollback(self) -> None:
        """Undo the failures since :meth:`checkpoint` (the bus failed, not this meter)."""
        if self._saved is not None:
            s = self._saved
            self.state, self.misses, self.offline_retries = s.state, s.misses, s.retries
            if self.state is not MeterState.OFFLINE:
                self.retry_at = 0.0
        self._saved = None
