"""``/metrics``: the standard process series, and no ``*_created`` series."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics


def test_process_series_are_exported_and_created_series_are_not() -> None:
    m = Metrics()
    m.polls.labels("rs485-1", "ok").inc()
    m.polls_skipped.labels("rs485-1", "energy").inc(3)
    text = m.render().decode()
    samples = {
        s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
    }
    assert samples["process_resident_memory_bytes"] > 0
    assert samples["process_cpu_seconds_total"] >= 0
    assert "process_start_time_seconds" in samples
    assert samples["metergw_polls_skipped_total"] == 3
    assert not [name for name in samples if name.endswith("_created")]
    assert "_created" not in text
