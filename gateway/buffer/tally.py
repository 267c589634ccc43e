"""The buffer's metrics after each commit: what was accepted, flagged, quarantined,
repeated and dropped, and how deep each sink's backlog is.

Each labelled series is looked up once and kept: prometheus_client's ``labels()``
(a lock, a tuple of strings, a dict) costs more per job than the readings' own checks.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Sequence

from prometheus_client import Counter as CounterSeries

from gateway.buffer.jobs import Outcome, WriteJob
from gateway.buffer.rows import ReadingValues
from gateway.buffer.writer import BufferWriter
from gateway.metrics import Metrics
from gateway.model import Quality, TimeSource

_QUALITY = operator.itemgetter(8)
_CONCENTRATOR = TimeSource.CONCENTRATOR.value


class CommitTally:
    """Counts committed jobs into :class:`~gateway.metrics.Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._flagged = metrics.readings_flagged
        self._by_bits: dict[int, list[CounterSeries]] = {}
        self._accepted = {
            origin: metrics.readings_accepted.labels(origin=origin)
            for origin in ("concentrator", "poll")
        }

    def job(self, job: WriteJob) -> None:
        """One committed (or refused) job: its quarantine, repeat, events and readings."""
        m = self._metrics
        for qe in job.quarantine:
            m.quarantined.labels(origin=qe.origin, reason=qe.kind or "other").inc()
        if job.outcome is Outcome.DUPLICATE:
            m.messages_repeated.inc()
        for e in job.stored_events:
            m.events.labels(kind=e.kind.value).inc()
        if job.outcome is not Outcome.ACCEPTED:
            return
        rows = job.rows
        if rows:
            origin = "concentrator" if rows[0][5] == _CONCENTRATOR else "poll"
            self._accepted[origin].inc(len(rows))
            self._flags(rows)

    def _flags(self, rows: Sequence[ReadingValues]) -> None:
        """Add the readings' quality flags to ``readings_flagged``, tallied per distinct
        combination first: a batch often carries the same flag on every reading."""
        tally = Counter(map(_QUALITY, rows))
        for bits, n in tally.items():
            if not bits:
                continue
            series = self._by_bits.get(bits)
            if series is None:
                series = self._by_bits[bits] = [
                    self._flagged.labels(flag=name) for name in Quality(bits).names()
                ]
            for one in series:
                one.inc(n)

    def committed(self, writer: BufferWriter, seconds: float) -> None:
        """After a commit: its duration, the rows held and each sink's depth."""
        m = self._metrics
        m.buffer_commit_seconds.observe(seconds)
        m.buffer_rows.set(writer.rows)
        for sink, cursor in writer.cursors.items():
            m.buffer_depth.labels(sink=sink).set(writer.behind(cursor))
