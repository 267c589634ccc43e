"""A checker for the Grafana dashboards in config/grafana/: are they valid dashboards
whose every query names only metrics (and labels) that metergw really exports?

What "exported" means is taken from the code, never from a list kept here: for the
gateway dashboard, a live ``Metrics().render()`` (prometheus-client adds ``_total`` to
counters and ``_bucket``/``_sum``/``_count`` to histograms); for the readings dashboard,
the series VictoriaMetrics makes of the line protocol that gateway/forward/lineproto.py
writes (``measurement,tags field=v`` -> ``measurement_field{tags}``), a rule that
tests/test_dashboards.py checks against a real VictoriaMetrics. The queries are read
by a small PromQL tokenizer. The tests run the checker on the dashboards and on copies
broken on purpose.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from gateway.buffer import EventRow, ReadingRow
from gateway.forward.influx import InfluxSinkConfig
from gateway.forward.lineproto import event_lines, reading_lines
from gateway.metrics import Metrics
from gateway.model import EventKind, Quality

GRAFANA = Path(__file__).resolve().parent.parent / "config" / "grafana"
GATEWAY, READINGS = "metergw-gateway.json", "metergw-readings.json"

# PromQL functions and aggregations (an unknown one is a mistake the checker reports).
# fmt: off
_RANGE_FUNCTIONS = frozenset({
    "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets",
    "predict_linear", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
    "count_over_time", "last_over_time", "present_over_time", "quantile_over_time",
    "stddev_over_time", "stdvar_over_time", "absent_over_time",
})
_AGGREGATIONS = frozenset({
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group",
})
FUNCTIONS = _RANGE_FUNCTIONS | _AGGREGATIONS | frozenset({
    "abs", "absent", "ceil", "clamp", "clamp_max", "clamp_min", "day_of_month", "day_of_week",
    "exp", "floor", "histogram_quantile", "hour", "label_join", "label_replace", "ln", "log2",
    "log10", "minute", "month", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "time",
    "timestamp", "vector", "year",
})
# fmt: on
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"bool", "and", "or", "unless", "offset", "inf", "nan"})
# What Grafana itself fills in.
_GRAFANA_VARIABLES = frozenset({"__rate_interval", "__interval", "__range"})

_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      | (?P<variable>\$\{\w+\}|\$\w+)
      | (?P<number>\d[\w.]*)                # 0.95, 1e3 and durations such as 5m
      | (?P<ident>[A-Za-z_][\w:]*)
      | (?P<punct>[{}()\[\],])
      | (?P<op>[-+*/%^=!<>~:@]+)
      | (?P<space>\s+)""",
    re.VERBOSE,
)
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.+),)?\s*(?P<label>\w+)\s*\)\s*$")


@dataclass(frozen=True)
class Selector:
    """One series selector: the metric and its matchers ``(label, op, quoted value)``."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...] = ()


@dataclass
class QueryNames:
    """What a PromQL expression names."""

    selectors: list[Selector] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)
    """Label names in matchers, ``by (...)``/``on (...)`` clauses and ``label_values``."""
    variables: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos : pos + 20]!r} in {expr!r}")
        if m.lastgroup != "space":
            out.append((m.lastgroup or "", m.group()))
        pos = m.end()
    return out


def _closing(tokens: list[tuple[str, str]], i: int) -> int:
    """The index of the bracket that closes the one at ``i``."""
    pair = {"(": ")", "[": "]", "{": "}"}[tokens[i][1]]
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j][1] == tokens[i][1]
        depth -= tokens[j][1] == pair
        if depth == 0:
            return j
    raise ValueError(f"unclosed {tokens[i][1]!r}")


def promql_names(expr: str) -> QueryNames:
    """The metrics, labels and variables a PromQL expression (or ``label_values``) names."""
    found = QueryNames()
    found.variables = {v.strip("${}") for kind, v in _tokens(expr) if kind == "variable"}
    found.variables |= set(re.findall(r"\$\{?(\w+)", expr))  # also inside label values
    if (lv := _LABEL_VALUES.match(expr)) is not None:  # a Grafana variable query
        found.labels.add(lv["label"])
        if lv["selector"]:
            sub = promql_names(lv["selector"])
            found.selectors, found.problems = sub.selectors, sub.problems
            found.labels |= sub.labels
        return found
    tokens = _tokens(expr)
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text == "[":  # a range or subquery: durations and variables only
            i = _closing(tokens, i) + 1
            continue
        if text == "{":  # a selector with no metric name before it
            end = _closing(tokens, i)
            found.problems.append(f"a selector without a metric name: {expr!r}")
            i = end + 1
            continue
        if kind != "ident" or text in _KEYWORDS:
            i += 1
            continue
        if text in _GROUPING:
            if nxt == "(":
                end = _closing(tokens, i + 1)
                found.labels |= {t for k, t in tokens[i + 2 : end] if k == "ident"}
                i = end + 1
            else:
                i += 1
            continue
        if nxt == "(" or (text in _AGGREGATIONS and nxt in _GROUPING):
            if text not in FUNCTIONS:
                found.problems.append(f"unknown function {text}()")
            elif text in _RANGE_FUNCTIONS:
                end = _closing(tokens, i + 1)
                if not any(t == "[" for _, t in tokens[i + 2 : end]):
                    found.problems.append(f"{text}() needs a range vector such as [5m]")
            i += 1
            continue
        matchers: list[tuple[str, str, str]] = []
        i += 1
        if nxt == "{":
            end = _closing(tokens, i)
            inner = [t for t in tokens[i + 1 : end] if t[1] != ","]
            if len(inner) % 3:
                raise ValueError(f"cannot read the matchers of {text} in {expr!r}")
            matchers = [
                (inner[j][1], inner[j + 1][1], inner[j + 2][1]) for j in range(0, len(inner), 3)
            ]
            found.labels |= {label for label, _, _ in matchers}
            i = end + 1
        found.selectors.append(Selector(text, tuple(matchers)))
    return found


@dataclass(frozen=True)
class Exported:
    """The metric names a datasource can hold, each with its label names."""

    labels: dict[str, frozenset[str]]
    added: frozenset[str] = frozenset()
    """Labels the datasource adds to every series (Prometheus: ``instance``, ``job``)."""


def gateway_exports() -> Exported:
    """What metergw's ``/metrics`` can expose, from a live render of its registry."""
    metrics = Metrics()
    # prometheus-client keeps a metric's label names only on the metric object, and a
    # labelled metric has no sample (so no labels in the render) until it is first used.
    label_names = {
        next(iter(m.describe())).name: frozenset(m._labelnames)
        for m in vars(metrics).values()
        if isinstance(m, MetricWrapperBase)
    }
    labels: dict[str, frozenset[str]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        own = label_names.get(family.name, frozenset())
        names = {
            "counter": [f"{family.name}_total"],
            "histogram": [f"{family.name}_{s}" for s in ("bucket", "sum", "count")],
        }.get(family.type, [family.name])
        for name in names:
            labels[name] = own | ({"le"} if name.endswith("_bucket") else set())
        for sample in family.samples:
            labels[sample.name] = labels.get(sample.name, own) | set(sample.labels)
    return Exported(labels, frozenset({"instance", "job"}))


def _fields(text: str, sep: str) -> list[str]:
    """Split line-protocol text on ``sep`` outside quotes, honouring backslash escapes."""
    parts, current, quoted, i = [], "", False, 0
    while i < len(text):
        if text[i] == "\\":
            current += text[i : i + 2]
            i += 2
            continue
        quoted ^= text[i] == '"'
        if text[i] == sep and not quoted:
            parts.append(current)
            current = ""
        else:
            current += text[i]
        i += 1
    return [*parts, current]


def victoria_series(line: str) -> dict[str, frozenset[str]]:
    """The series VictoriaMetrics makes of one line: ``measurement_field`` -> tag keys
    (every field, strings too: those are stored as 0)."""
    series, values, _ts = _fields(line, " ")
    measurement, *tags = _fields(series, ",")
    tag_keys = frozenset(t.split("=", 1)[0] for t in tags)
    return {f"{measurement}_{f.split('=', 1)[0]}": tag_keys for f in _fields(values, ",")}


def forwarded_lines(ts_ms: int) -> list[str]:
    """Real lines of the InfluxDB sink: readings with and without flags and an interval,
    and events, with the sink's default measurement."""
    measurement = InfluxSinkConfig.model_fields["measurement"].default
    flagged = int(Quality.BACKFILLED | Quality.ESTIMATED)
    readings: list[ReadingRow] = []
    for n, meter in enumerate(("000000000001", "000000000002")):
        for k, (key, value, quality, interval) in enumerate(
            (
                ("energy_import_total_kwh", f"{120.5 + n}", 0, None),
                ("energy_import_total_kwh", f"{121.25 + n}", flagged, 900),
                ("power_active_total_kw", "1.5", 0, None),
                ("voltage_l1_v", "230.1", 0, None),
                ("voltage_l2_v", "229.8", int(Quality.SUSPECT_SPIKE), None),
            )
        ):
            t = ts_ms - 60_000 * (5 - k)
            row = (k, meter, key, value, "", t, "meter", t, "rs485-1", quality, interval)
            readings.append(row)
    events: list[EventRow] = [
        (90, EventKind.GAP_OPENED, ts_ms - 120_000, "000000000001", "3 polls missed", "{}"),
        (91, EventKind.NETWORK_GAP, ts_ms - 60_000, "gw-7", 'no "message" for 10 min', "{}"),
        (92, EventKind.METER_OFFLINE, ts_ms - 60_000, "000000000002", "no reply", "{}"),
    ]
    return reading_lines(measurement, readings) + event_lines(events)


def readings_exports() -> Exported:
    """The series the forwarded readings and events become in VictoriaMetrics."""
    labels: dict[str, frozenset[str]] = {}
    for line in forwarded_lines(1_700_000_000_000):
        for name, tags in victoria_series(line).items():
            labels[name] = labels.get(name, frozenset()) | tags
    return Exported(labels)


PANEL_TYPES = frozenset({"row", "timeseries", "stat", "state-timeline", "bargauge", "table"})
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """Every PromQL query of a dashboard, with where it is: panels, variables, annotations."""
    out: list[tuple[str, str]] = []
    for panel in dash.get("panels", []):
        for target in panel.get("targets", []):
            out.append(
                (f"panel {panel.get('title')!r} {target.get('refId')}", target.get("expr", ""))
            )
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            out.append(
                (f"variable {var['name']}", query["query"] if isinstance(query, dict) else query)
            )
    for note in dash.get("annotations", {}).get("list", []):
        if "expr" in note:
            out.append((f"annotation {note['name']!r}", note["expr"]))
    return out


def dashboard_problems(
    dash: dict[str, Any], exported: Exported, variables: set[str], scope_label: str | None = None
) -> list[str]:
    """Everything wrong with a dashboard, one line each; ``[]`` for a good one.

    ``variables``: the template variables it must have (besides ``datasource``);
    ``scope_label``: a label every selector must filter on by its variable
    (``instance=~"$instance"``), so that picking one gateway shows only that gateway.
    """
    problems: list[str] = []
    for key in ("title", "uid"):
        if not isinstance(dash.get(key), str) or not dash[key]:
            problems.append(f"no {key}")
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        problems.append(f"schemaVersion {dash.get('schemaVersion')!r} is not a current Grafana's")
    defined = {v.get("name") for v in dash.get("templating", {}).get("list", [])}
    ds: dict[str, Any] = next(
        (v for v in dash["templating"]["list"] if v.get("name") == "datasource"), {}
    )
    if (ds.get("type"), ds.get("query")) != ("datasource", "prometheus"):
        problems.append("no datasource variable of type prometheus")
    problems += [f"no variable {v!r}" for v in sorted(variables - defined)]
    panels = dash.get("panels") or []
    ids = [p.get("id") for p in panels]
    if not panels or len(set(ids)) != len(ids):
        problems.append(f"panels missing or with repeated ids: {ids}")
    for panel in panels:
        problems += _panel_problems(panel, exported)
    for where, expr in queries(dash):
        problems += [f"{where}: {p}" for p in _query_problems(expr, exported, scope_label, where)]
        undefined = promql_names(expr).variables - defined - _GRAFANA_VARIABLES
        problems += [f"{where}: undefined variable ${v}" for v in sorted(undefined)]
    return problems


def _panel_problems(panel: dict[str, Any], exported: Exported) -> list[str]:
    where = f"panel {panel.get('title')!r}"
    problems: list[str] = []
    if panel.get("type") not in PANEL_TYPES:
        problems.append(f"type {panel.get('type')!r} is not one of {sorted(PANEL_TYPES)}")
    pos = panel.get("gridPos", {})
    if not all(isinstance(pos.get(k), int) for k in "hwxy") or pos["x"] + pos["w"] > 24:
        problems.append(f"bad gridPos {pos}")
    if panel.get("type") != "row":
        targets = panel.get("targets") or []
        if not panel.get("title") or not targets:
            problems.append("needs a title and targets")
        sources = [panel.get("datasource"), *(t.get("datasource") for t in targets)]
        if any(source != DATASOURCE for source in sources):
            problems.append(f"datasource is not {DATASOURCE}")
        if len({t.get("refId") for t in targets}) != len(targets):
            problems.append("repeated refIds")
        for target in targets:
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            used = promql_names(target.get("expr", "")).selectors
            known = exported.added.union(*(exported.labels.get(s.metric, ()) for s in used))
            problems += [f"legend label {n!r} is in no series" for n in sorted(legend - known)]
    return [f"{where}: {p}" for p in problems]


def _query_problems(
    expr: str, exported: Exported, scope_label: str | None, where: str
) -> list[str]:
    if not expr.strip():
        return ["empty query"]
    names = promql_names(expr)
    problems = list(names.problems)
    known: set[str] = set(exported.added)
    for s in names.selectors:
        if s.metric not in exported.labels:
            problems.append(f"{s.metric} is not a metric metergw exports")
            continue
        known |= exported.labels[s.metric]
        for label, _op, _value in s.matchers:
            if label not in exported.labels[s.metric] | exported.added:
                problems.append(f"{s.metric} has no label {label!r}")
        scope = f'{scope_label}=~"${scope_label}"'
        scoped = (scope_label, "=~", f'"${scope_label}"') in s.matchers
        if scope_label and not scoped and where != f"variable {scope_label}":
            problems.append(f"{s.metric} is not filtered by {scope}")
    problems += [f"no series has the label {n!r}" for n in sorted(names.labels - known)]
    return problems


def load(name: str) -> dict[str, Any]:
    """A dashboard of config/grafana/."""
    data: dict[str, Any] = json.loads((GRAFANA / name).read_text(encoding="utf-8"))
    return data


CHECKS: dict[str, tuple[Any, set[str], str | None]] = {
    GATEWAY: (gateway_exports, {"instance"}, "instance"),
    READINGS: (readings_exports, {"meter", "quantity"}, None),
}


def problems_of(name: str, dash: dict[str, Any]) -> list[str]:
    """What is wrong with ``dash``, checked as the dashboard file ``name``."""
    exports, variables, scope = CHECKS[name]
    return dashboard_problems(dash, exports(), variables, scope)
