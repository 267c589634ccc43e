"""The Grafana dashboards in config/grafana/ (tests/dashboard_check.py is the checker).

Each dashboard is a valid Grafana dashboard whose every query names only metrics and
labels metergw exports; the checker refuses copies with a made-up metric or label; and
the queries run, on a real VictoriaMetrics, against what metergw really sends.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from gateway.metrics import Metrics
from gateway.model import EventKind
from protocols.quantities import QUANTITIES
from tests.dashboard_check import (
    GATEWAY,
    GRAFANA,
    READINGS,
    forwarded_lines,
    load,
    problems_of,
    promql_names,
    queries,
    readings_exports,
    victoria_series,
)
from tests.servers import VictoriaMetricsServer, wait_until


@pytest.mark.parametrize("name", [GATEWAY, READINGS])
def test_dashboard_is_valid_and_names_only_what_metergw_exports(name: str) -> None:
    assert problems_of(name, load(name)) == []


def _metrics_used(name: str) -> set[str]:
    return {s.metric for _, e in queries(load(name)) for s in promql_names(e).selectors}


def test_gateway_dashboard_shows_what_an_operator_watches() -> None:
    wanted = {
        "metergw_ready", "metergw_bus_utilisation_ratio", "metergw_bus_cycle_seconds",
        "metergw_meters", "metergw_polls_total", "metergw_polls_skipped_total",
        "metergw_polls_late_total", "metergw_buffer_depth",
        "metergw_buffer_oldest_unsent_age_seconds", "metergw_readings_accepted_total",
        "metergw_ingest_window_messages", "metergw_ingest_window_bytes",
        "metergw_payloads_rejected_total", "metergw_messages_repeated_total",
        "metergw_quarantined_total", "metergw_events_total", "metergw_sink_errors_total",
        "metergw_buffer_commit_seconds_bucket", "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    }  # fmt: skip
    assert wanted - _metrics_used(GATEWAY) == set()
    types = {p["type"] for p in load(GATEWAY)["panels"]}
    assert {"timeseries", "stat", "state-timeline"} <= types
    gaps = " ".join(e for _, e in queries(load(GATEWAY)) if "metergw_events_total" in e)
    assert all(kind in gaps for kind in ("gap_opened", "gap_filled", "network_gap"))


def test_readings_dashboard_reads_the_forwarded_series() -> None:
    assert _metrics_used(READINGS) == {"meter_value", "metergw_event_value"}
    exprs = " ".join(e for _, e in queries(load(READINGS)))
    for quantity in ("energy_", "power_active_total_kw", "voltage_l"):
        assert quantity in exprs
    assert "by (quality)" in exprs
    assert "by (kind)" in exprs


def _alternatives(pattern: str) -> list[str]:
    """A regex's alternatives, groups expanded: ``a_(b|c)|d`` -> ``a_b``, ``a_c``, ``d``."""
    group = re.search(r"\(([^()]*)\)", pattern)
    if group is None:
        return pattern.split("|")
    head, tail = pattern[: group.start()], pattern[group.end() :]
    return [x for alt in group[1].split("|") for x in _alternatives(head + alt + tail)]


@pytest.mark.parametrize(("name", "at_least"), [(GATEWAY, 6), (READINGS, 10)])
def test_matchers_name_real_quantity_keys_and_event_kinds(name: str, at_least: int) -> None:
    """A misspelt quantity or event kind in a matcher would only show an empty panel."""
    values = {"quantity": set(QUANTITIES), "kind": {str(k) for k in EventKind}}
    checked = 0
    for where, expr in queries(load(name)):
        for selector in promql_names(expr).selectors:
            for label, op, quoted in selector.matchers:
                if label not in values or "$" in quoted:
                    continue
                for alternative in _alternatives(quoted.strip('"')):  # each names something
                    matches = [v for v in values[label] if re.fullmatch(alternative, v)]
                    assert matches, f"{where}: {label}{op}{quoted}: {alternative!r} names none"
                    checked += 1
    assert checked >= at_least


@pytest.mark.parametrize(
    ("expr", "metrics", "labels"),
    [
        ("metergw_ready", ["metergw_ready"], set()),
        ('metergw_meters{state="offline"} > 0', ["metergw_meters"], {"state"}),
        (
            'sum by (bus, result) (rate(metergw_polls_total{bus=~"$bus"}[$__rate_interval]))',
            ["metergw_polls_total"],
            {"bus", "result"},
        ),
        (  # words inside label values and durations are no metrics
            'sum(increase(metergw_events_total{kind=~"gap_opened|rate"}[1h30m])) by (kind)',
            ["metergw_events_total"],
            {"kind"},
        ),
        (
            "histogram_quantile(0.95, sum by (le) (rate(a_bucket[5m:1m]))) / on(x) group_left b",
            ["a_bucket", "b"],
            {"le", "x"},
        ),
        ("time() - metergw_start_time_seconds offset 1h", ["metergw_start_time_seconds"], set()),
        (
            'label_values(meter_value{meter=~"$meter"}, quantity)',
            ["meter_value"],
            {"meter", "quantity"},
        ),
        ("label_values(instance)", [], {"instance"}),
    ],
)
def test_tokenizer_finds_metrics_and_labels(
    expr: str, metrics: list[str], labels: set[str]
) -> None:
    found = promql_names(expr)
    assert [s.metric for s in found.selectors] == metrics
    assert found.labels == labels
    assert found.problems == []


@pytest.mark.parametrize(
    ("name", "old", "new", "problem"),
    [
        (GATEWAY, "metergw_bus_utilisation_ratio{", "metergw_bus_utilization_ratio{",
         "metergw_bus_utilization_ratio is not a metric metergw exports"),
        (GATEWAY, "rate(metergw_polls_total{", "rate(metergw_polls{",
         "metergw_polls is not a metric"),  # a counter without its _total
        (GATEWAY, "metergw_buffer_depth{", "metergw_buffer_depth_rows{",
         "metergw_buffer_depth_rows"),
        (GATEWAY, "sum by (instance, bus, result)", "sum by (instance, bus, outcome)",
         "no series has the label 'outcome'"),
        (GATEWAY, 'metergw_bus_cycle_seconds{instance=~"$instance", ', "metergw_bus_cycle_seconds{",
         'not filtered by instance=~"$instance"'),
        (GATEWAY, "rate(process_cpu_seconds_total{", "rates(process_cpu_seconds_total{",
         "unknown function rates()"),
        (GATEWAY, "[$__rate_interval]", "", "needs a range vector"),
        (GATEWAY, '{instance=~"$instance"}', '{instance=~"$gateway"}',
         "undefined variable $gateway"),
        (READINGS, "count_over_time(meter_value{", "count_over_time(meter_readings{",
         "meter_readings is not a metric"),
        (READINGS, "metergw_event_value", "metergw_events_total", "metergw_events_total"),
        (READINGS, 'meter_value{meter=~"$meter", quantity=',
         'meter_value{device=~"$meter", quantity=', "meter_value has no label 'device'"),
        (READINGS, "{{meter}} {{quantity}}", "{{meter}} {{unit}}", "legend label 'unit'"),
    ],
)  # fmt: skip
def test_checker_refuses_names_metergw_does_not_export(
    name: str, old: str, new: str, problem: str
) -> None:
    text = (GRAFANA / name).read_text(encoding="utf-8")
    old, new = json.dumps(old)[1:-1], json.dumps(new)[1:-1]  # as written in the JSON
    assert old in text
    broken = json.loads(text.replace(old, new, 1))
    assert any(problem in p for p in problems_of(name, broken)), problems_of(name, broken)


def test_checker_refuses_a_dashboard_without_its_datasource_variable() -> None:
    dash = copy.deepcopy(load(GATEWAY))
    dash["templating"]["list"] = [v for v in dash["templating"]["list"] if v["name"] != "instance"]
    dash["templating"]["list"][0]["query"] = "influxdb"
    dash["panels"][1]["targets"] = []
    dash["schemaVersion"] = 16
    found = problems_of(GATEWAY, dash)
    for problem in (
        "no datasource variable of type prometheus",
        "no variable 'instance'",
        "needs a title and targets",
        "schemaVersion 16",
        "undefined variable $instance",
    ):
        assert any(problem in p for p in found), (problem, found)


# Real servers: the naming rule and the queries, on VictoriaMetrics.

_SUBSTITUTE = {"$__rate_interval": "2m", "$__interval": "1m", "$__range": "1h"}


def _runnable(expr: str) -> str:
    """A query as Grafana would send it: its variables filled in (every ``$var`` -> all)."""
    for var, value in _SUBSTITUTE.items():
        expr = expr.replace(var, value)
    return re.sub(r"\$\w+", ".*", expr)


def _query(vm: VictoriaMetricsServer, expr: str, where: str = "") -> list[dict[str, Any]]:
    url = f"{vm.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.loads(r.read())
    except urllib.error.HTTPError as exc:  # 422 for a query it cannot parse
        pytest.fail(f"{where}: {expr}: {exc}: {exc.read()[:300]!r}")
    assert answer["status"] == "success", (where, expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _post(vm: VictoriaMetricsServer, path: str, body: str) -> None:
    request = urllib.request.Request(f"{vm.url}{path}", data=body.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status in (200, 204)
    vm.force_flush()  # and still poll: the import path hands rows on asynchronously


@pytest.mark.integration
def test_readings_queries_find_forwarded_lines_in_victoria_metrics(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    lines = forwarded_lines(int(time.time() * 1000))
    _post(victoria_metrics, "/api/v2/write?bucket=b&org=o&precision=ms", "\n".join(lines))
    stored: dict[str, frozenset[str]] = {}
    expected_samples = sum(len(victoria_series(line)) for line in lines)

    def all_stored() -> bool:
        series = victoria_metrics.export()
        stored.clear()
        for s in series:
            name, labels = s["metric"]["__name__"], frozenset(s["metric"]) - {"__name__"}
            stored[name] = stored.get(name, labels) | labels
        return sum(len(s["values"]) for s in series) == expected_samples

    wait_until(all_stored, what="the lines in VictoriaMetrics")
    assert stored == readings_exports().labels  # the naming rule the checker assumes
    for where, expr in queries(load(READINGS)):
        if not expr.startswith("label_values"):
            assert _query(victoria_metrics, _runnable(expr), where) != [], where


def _scrape(metrics: Metrics, step: int, ts_ms: int) -> str:
    """``/metrics`` of a gateway that has been busy: every metric has a series (counters
    grown by ``step``), each sample stamped ``ts_ms``, as a scrape at that time."""
    kinds = (EventKind.GAP_OPENED, EventKind.NETWORK_GAP)  # what the gap panels select
    for m in vars(metrics).values():
        if not isinstance(m, MetricWrapperBase):
            continue
        names = m._labelnames  # the only place prometheus-client keeps them
        for values in itertools.product(*((kinds if n == "kind" else ("a",)) for n in names)):
            child: Any = m.labels(*values) if names else m
            if isinstance(m, Counter):
                child.inc(step)
            elif isinstance(m, Gauge):
                child.set(step)
            elif isinstance(m, Histogram):
                child.observe(0.01 * step)
    metrics.start_time.set(ts_ms / 1000 - 5)  # a restart between two scrapes
    lines = metrics.render().decode().splitlines()
    return "".join(f"{ln} {ts_ms}\n" if not ln.startswith("#") else f"{ln}\n" for ln in lines)


@pytest.mark.integration
def test_gateway_queries_show_data_of_a_busy_gateway(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    metrics, now_ms = Metrics(), int(time.time() * 1000)
    for step, ts_ms in enumerate((now_ms - 60_000, now_ms - 30_000), start=1):
        body = _scrape(metrics, step, ts_ms)
        _post(victoria_metrics, "/api/v1/import/prometheus?extra_label=instance=gw1:8181", body)
    scrapes = 'count_over_time(metergw_ready{instance="gw1:8181"}[5m])'

    def both_stored() -> bool:
        return [r["value"][1] for r in _query(victoria_metrics, scrapes)] == ["2"]

    wait_until(both_stored, what="both scrapes in VictoriaMetrics")
    for where, expr in queries(load(GATEWAY)):
        if not expr.startswith("label_values"):
            assert _query(victoria_metrics, _runnable(expr), where) != [], where
