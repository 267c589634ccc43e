"""The recent events and errors ``/status`` shows, kept in memory.

Two small rings: gateway events (meter offline, gap opened, counter reset...)
as they were committed, and warnings/errors from the logs. Separate rings so
that a sink retrying every second cannot push the last meter outage out of
sight; a run of identical log entries collapses into one with a count.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.model import Event, EventKind

_QUIET_KINDS = frozenset({EventKind.METER_ONLINE, EventKind.BUS_RECOVERED, EventKind.GAP_FILLED})
_EVENT_NAMES = frozenset(k.value for k in EventKind)
# Fields of a log entry that say what it is about, in order of preference.
_SUBJECT_FIELDS = ("meter", "bus", "sink", "concentrator", "topic", "path", "subject")


@dataclass(slots=True)
class RecentEntry:
    """One line of the recent list (mutable only to count repeats)."""

    seq: int
    ts_ms: int
    kind: str
    level: str
    subject: str
    reason: str
    count: int = 1
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The entry as ``/status`` shows it."""
        return {
            "seq": self.seq,
            "ts_ms": self.ts_ms,
            "kind": self.kind,
            "level": self.level,
            "subject": self.subject,
            "reason": self.reason,
            "count": self.count,
            "detail": self.detail,
        }


class RecentEvents:
    """Bounded rings of recent events and log problems, numbered by ``seq``."""

    def __init__(self, size: int = 200) -> None:
        self.events: collections.deque[RecentEntry] = collections.deque(maxlen=size)
        self.errors: collections.deque[RecentEntry] = collections.deque(maxlen=max(10, size // 4))
        self._seq = 0

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def add_events(self, events: Iterable[Event]) -> None:
        """Record events that were committed to the buffer."""
        for e in events:
            self.events.append(
                RecentEntry(
                    seq=self._next(),
                    ts_ms=e.ts_ms,
                    kind=e.kind.value,
                    level="info" if e.kind in _QUIET_KINDS else "warning",
                    subject=e.subject,
                    reason=e.reason,
                    detail=dict(e.detail),
                )
            )

    def add_problem(self, kind: str, level: str, subject: str, reason: str) -> None:
        """Record a warning or error; a repeat of the last one only bumps its count."""
        now = int(time.time() * 1000)
        last = self.errors[-1] if self.errors else None
        if last is not None and (last.kind, last.subject, last.reason) == (kind, subject, reason):
            last.count += 1
            last.ts_ms = now
            return
        self.errors.append(
            RecentEntry(
                seq=self._next(), ts_ms=now, kind=kind, level=level, subject=subject, reason=reason
            )
        )

    def to_json(self, since: int = 0) -> dict[str, list[dict[str, Any]]]:
        """Both rings, oldest first, only entries with ``seq > since``."""
        return {
            "events": [e.to_json() for e in self.events if e.seq > since],
            "errors": [e.to_json() for e in self.errors if e.seq > since],
        }


class RecentLogHandler(logging.Handler):
    """Copies warnings and errors from the logs into :class:`RecentEvents`.

    Log entries named like an event kind are skipped: the event itself is
    recorded when it commits, with its subject and reason.
    """

    def __init__(self, recent: RecentEvents, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.set_name("metergw.recent")
        self._recent = recent

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.msg
            if isinstance(msg, dict):
                kind = str(msg.get("event", ""))
                subject = next((str(msg[f]) for f in _SUBJECT_FIELDS if f in msg), "")
                reason = str(msg.get("error", msg.get("reason", "")))
            else:
                kind, subject, reason = record.getMessage(), "", ""
            if kind in _EVENT_NAMES:
                return
            component = record.name.removeprefix("metergw.")
            self._recent.add_problem(kind, record.levelname.lower(), subject or component, reason)
        except Exception:  # a status ring must never break logging
            self.handleError(record)
