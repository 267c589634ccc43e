"""The gateway's Prometheus metrics, in one registry per daemon.

Each component takes a :class:`Metrics` and updates it; ``/metrics`` renders
the registry. A registry per instance keeps several daemons in one process
(tests, benchmarks) from mixing their counts.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

# ``*_created`` series double the exposition and nothing reads them (dashboards use
# rates and the process start time).
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Every metric metergw exports. Names are ``metergw_*``."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        # The standard process_* (CPU, RSS, open files, start time) and python_info series.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        # Southbound: polling.
        self.polls = Counter(
            "metergw_polls", "Meter transactions by result", ["bus", "result"], registry=r
        )
        self.poll_seconds = Histogram(
            "metergw_poll_seconds",
            "Duration of one meter transaction",
            ["bus"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.bus_utilisation = Gauge(
            "metergw_bus_utilisation_ratio",
            "Share of time the bus was busy (last minute)",
            ["bus"],
            registry=r,
        )
        self.frames_discarded = Counter(
            "metergw_frames_discarded",
            "Bytes or frames thrown away by a decoder",
            ["bus", "reason"],
            registry=r,
        )
        self.polls_skipped = Counter(
            "metergw_polls_skipped",
            "Poll ticks a group missed because its bus was busy (coalesced into a later poll)",
            ["bus", "group"],
            registry=r,
        )
        self.polls_late = Counter(
            "metergw_polls_late",
            "Polls that started later than a tenth of their interval after they were due",
            ["bus", "group"],
            registry=r,
        )
        self.bus_cycle_seconds = Gauge(
            "metergw_bus_cycle_seconds",
            "Time one pass over every due poll of the bus takes (last minute's mean poll x polls)",
            ["bus"],
            registry=r,
        )
        self.meters = Gauge("metergw_meters", "Meters by state", ["state"], registry=r)
        self.gaps = Gauge(
            "metergw_gaps",
            "Gaps in the ledger by state (open, filling, filled, partly_filled, unrecoverable)",
            ["state"],
            registry=r,
        )
        self.probes = Counter(
            "metergw_probes",
            "Cheap probes of offline meters (one request, no retries) by result",
            ["bus", "result"],
            registry=r,
        )
        # Acceptance.
        self.readings_accepted = Counter(
            "metergw_readings_accepted",
            "Readings committed to the buffer",
            ["origin"],
            registry=r,
        )
        self.readings_flagged = Counter(
            "metergw_readings_flagged",
            "Readings stored with a quality flag",
            ["flag"],
            registry=r,
        )
        self.payloads_rejected = Counter(
            "metergw_payloads_rejected", "Concentrator messages rejected", ["reason"], registry=r
        )
        self.events = Counter("metergw_events", "Events recorded", ["kind"], registry=r)
        self.messages_repeated = Counter(
            "metergw_messages_repeated",
            "Concentrator messages dropped as exact repeats of one already stored",
            registry=r,
        )
        self.quarantined = Counter(
            "metergw_quarantined",
            "Entries kept in the quarantine table, by origin and reason kind",
            ["origin", "reason"],
            registry=r,
        )
        self.ingest_window_messages = Gauge(
            "metergw_ingest_window_messages",
            "Concentrator messages received and not yet committed",
            registry=r,
        )
        self.ingest_window_bytes = Gauge(
            "metergw_ingest_window_bytes",
            "Payload bytes of the messages received and not yet committed",
            registry=r,
        )
        # Buffer.
        self.buffer_commit_seconds = Histogram(
            "metergw_buffer_commit_seconds",
            "Duration of one group commit",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.buffer_rows = Gauge("metergw_buffer_rows", "Rows held in the buffer", registry=r)
        self.buffer_dropped = Counter(
            "metergw_buffer_dropped", "Rows dropped by the disk-cap policy", registry=r
        )
        self.buffer_depth = Gauge(
            "metergw_buffer_depth", "Rows not yet delivered, per sink", ["sink"], registry=r
        )
        self.buffer_reads = Counter(
            "metergw_buffer_reads",
            "Batches read for a sink: from memory (rows just committed) or from disk",
            ["sink", "source"],
            registry=r,
        )
        # Northbound: sinks.
        self.sink_write_seconds = Histogram(
            "metergw_sink_write_seconds",
            "Duration of one sink write",
            ["sink"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sink_points = Counter(
            "metergw_sink_points", "Points confirmed by a sink", ["sink"], registry=r
        )
        self.sink_errors = Counter(
            "metergw_sink_errors", "Failed sink writes by kind", ["sink", "kind"], registry=r
        )
        self.sink_quarantined = Counter(
            "metergw_sink_quarantined", "Points a sink refused for good", ["sink"], registry=r
        )
        # Operations: what the daemon itself is and how it is doing.
        self.build_info = Gauge(
            "metergw_build_info",
            "Always 1; the labels say which metergw and Python run",
            ["version", "python"],
            registry=r,
        )
        self.start_time = Gauge(
            "metergw_start_time_seconds", "When the daemon started, Unix time", registry=r
        )
        self.ready = Gauge("metergw_ready", "1 when /readyz answers 200, else 0", registry=r)
        self.buffer_oldest_unsent_age = Gauge(
            "metergw_buffer_oldest_unsent_age_seconds",
            "Age of the oldest reading a sink has not confirmed (0 when none)",
            ["sink"],
            registry=r,
        )
        self.ingest_connected = Gauge(
            "metergw_ingest_connected", "1 while connected to the concentrator broker", registry=r
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
