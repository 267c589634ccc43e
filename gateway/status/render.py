"""``/status`` documents as rich tables, for ``metergw status`` and the demo view.

Works on the JSON document (not on live objects) so that the command line,
which talks to a daemon over HTTP, and the demo show exactly the same thing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

# Quantities worth a column, in order of preference; a meter shows the first few it has.
SHOWN_KEYS = (
    "energy_import_total_kwh",
    "energy_combined_total_kwh",
    "power_active_total_kw",
    "voltage_l1_v",
    "current_l1_a",
    "frequency_hz",
)
_STATE_STYLE = {
    "online": "green",
    "ok": "green",
    "reporting": "green",
    "suspect": "yellow",
    "stale": "yellow",
    "offline": "bold red",
    "fault": "bold red",
    "unknown": "dim",
}


def age(ms: int | None, now_ms: int | None = None) -> str:
    """``1234`` ms ago -> ``"1.2 s ago"``; ``None`` -> ``"never"``."""
    if not ms:
        return "never"
    seconds = max(0.0, ((now_ms or int(time.time() * 1000)) - ms) / 1000)
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def clock(ms: int | None) -> str:
    """Milliseconds since the epoch -> ``HH:MM:SS`` UTC."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def state_text(state: str | None) -> Text:
    """A meter or bus state, coloured by severity."""
    s = state or "unknown"
    return Text(s, style=_STATE_STYLE.get(s, ""))


def _values(values: Mapping[str, Any], limit: int = 3) -> str:
    parts = []
    for key in SHOWN_KEYS:
        v = values.get(key)
        if v is not None:
            flag = "!" if v.get("q") else ""
            parts.append(f"{v['v']:.10g} {v.get('u', '')}{flag}".strip())
        if len(parts) == limit:
            break
    return "  ".join(parts) or "-"


def header(doc: Mapping[str, Any]) -> Text:
    """One line: name, version, uptime, readiness, readings accepted."""
    gw = doc.get("gateway", {})
    ready = gw.get("ready")
    t = Text()
    t.append(f"{gw.get('name', '?')}", style="bold")
    t.append(f"  metergw {gw.get('version', '?')}  up {gw.get('uptime_s', 0):.0f} s  ")
    if ready:
        t.append("ready", style="green")
    else:
        t.append("not ready: " + "; ".join(gw.get("not_ready", [])), style="bold red")
    t.append(f"  readings accepted {doc.get('readings_accepted', 0)}")
    ingest = doc.get("ingest")
    if ingest is not None:
        t.append("  ingest ")
        t.append(
            "connected" if ingest.get("connected") else "disconnected",
            style="green" if ingest.get("connected") else "red",
        )
    return t


def buses_table(doc: Mapping[str, Any]) -> Table:
    """Buses with state, utilisation and how many meters answer."""
    t = Table(title="Buses", title_justify="left", expand=False)
    for col in ("bus", "protocol", "state", "link", "utilisation", "meters online", "skipped"):
        t.add_column(col)
    for b in doc.get("buses", []):
        util = b.get("utilisation")
        # Ticks a poll group missed because the line was busy: 0 when the schedule fits.
        skipped = sum(int(g.get("skipped", 0)) for g in b.get("groups") or [])
        t.add_row(
            str(b.get("name")),
            str(b.get("protocol", "")),
            state_text(b.get("state")),
            str(b.get("link", "")),
            f"{util * 100:.0f} %" if isinstance(util, int | float) else "-",
            f"{b.get('online', 0)}/{b.get('meters', 0)}",
            Text(str(skipped), style="yellow") if skipped else Text("0"),
        )
    return t


def meters_table(doc: Mapping[str, Any], limit: int | None = None) -> Table:
    """Meters with state, last reading and a few last values; problems first."""
    now = doc.get("gateway", {}).get("now_ms")
    meters: Sequence[Mapping[str, Any]] = doc.get("meters", [])
    order = {"offline": 0, "fault": 0, "suspect": 1, "stale": 1}
    rows = sorted(meters, key=lambda m: (order.get(m.get("state", ""), 2), str(m.get("meter"))))
    t = Table(title="Meters", title_justify="left")
    for col in ("meter", "via", "state", "last reading", "values", "problem"):
        t.add_column(col, overflow="fold")
    shown = rows if limit is None else rows[:limit]
    for m in shown:
        via = m.get("bus") or m.get("topic") or ""
        problem = m.get("last_error") or ""
        if m.get("misses"):
            problem = f"{m['misses']} missed: {problem}".rstrip(": ")
        t.add_row(
            str(m.get("meter")),
            str(via),
            state_text(m.get("state")),
            age(m.get("last_reading_ms"), now),
            _values(m.get("values") or {}),
            Text(str(problem), style="red" if problem else ""),
        )
    if limit is not None and len(rows) > limit:
        t.caption = f"{len(rows) - limit} more meters not shown"
    return t


def concentrators_table(doc: Mapping[str, Any], limit: int | None = None) -> Table:
    """Concentrators (MQTT topics) with state, what they sent and their last message; stale first.

    The caption says when the ``meters`` list holds only some concentrator
    meters (the gateway keeps per-meter detail for the first few only).
    """
    now = doc.get("gateway", {}).get("now_ms")
    concs: Sequence[Mapping[str, Any]] = doc.get("concentrators", [])
    rows = sorted(concs, key=lambda c: (c.get("state") != "stale", str(c.get("topic"))))
    t = Table(title="Concentrators", title_justify="left", caption_justify="left")
    t.add_column("concentrator", overflow="fold")
    t.add_column("state")
    for col in ("messages", "readings", "meters in last message"):
        t.add_column(col, justify="right")
    t.add_column("last message")
    shown = rows if limit is None else rows[:limit]
    for c in shown:
        t.add_row(
            str(c.get("topic")),
            state_text(c.get("state")),
            str(c.get("messages", 0)),
            str(c.get("readings", 0)),
            str(c.get("meters_last_message", 0)),
            age(c.get("received_ms"), now),
        )
    notes = []
    if limit is not None and len(rows) > limit:
        notes.append(f"{len(rows) - limit} more concentrators not shown")
    if doc.get("concentrator_meters_truncated"):
        notes.append(
            f"meter detail for the first {doc.get('concentrator_meters_detail_limit')} "
            "concentrator meters only; the others are counted here"
        )
    if notes:
        t.caption = "; ".join(notes)
    return t


def buffer_table(doc: Mapping[str, Any]) -> Table:
    """Buffer size and, per sink, what is still to deliver."""
    buf = doc.get("buffer") or {}
    rows = buf.get("rows", 0)
    size = buf.get("bytes", 0) / 1e6
    t = Table(
        title="Buffer",
        title_justify="left",
        caption=f"{rows} rows, {size:.1f} MB, {buf.get('dropped', 0)} dropped by the disk cap, "
        f"{buf.get('quarantined', 0)} quarantined",
        caption_justify="left",
        min_width=64,
    )
    for col in ("sink", "state", "depth", "oldest unsent"):
        t.add_column(col)
    running = {str(s.get("name")): s for s in doc.get("sinks") or [] if isinstance(s, Mapping)}
    cursors = {str(s.get("name")): s for s in buf.get("sinks", [])}
    # Running sinks first, as the daemon lists them; then cursors no sink reads any more.
    for name in [*running, *sorted(set(cursors) - set(running))]:
        s = cursors.get(name, {})
        depth = int(s.get("depth", 0))
        t.add_row(
            name,
            _sink_state(running.get(name)) if "sinks" in doc else Text("-"),
            Text(str(depth), style="yellow" if depth > 1000 else ""),
            f"{s.get('oldest_unsent_age_s', 0):.1f} s" if depth else "-",
        )
    return t


def _sink_state(sink: Mapping[str, Any] | None) -> Text:
    """``running``, ``refused: why`` (its server will not take our writes), or ``off``."""
    if sink is None:
        return Text("off", style="dim")  # a cursor left by a sink no longer configured
    if sink.get("refused"):
        return Text(f"refused: {sink['refused']}", style="bold red")
    return Text("running", style="green")


def gaps_table(doc: Mapping[str, Any], limit: int = 20) -> Table:
    """Gaps of the ledger: open and filling ones with their backfill's progress first."""
    gaps = doc.get("gaps") or {}
    counts = gaps.get("counts") or {}
    t = Table(
        title="Gaps",
        title_justify="left",
        caption=", ".join(f"{n} {state}" for state, n in counts.items() if n) or "none",
        caption_justify="left",
    )
    for col in ("meter", "cause", "state", "from", "to", "recovered", "missing", "progress"):
        t.add_column(col)
    for g in (gaps.get("gaps") or [])[:limit]:
        state = str(g.get("state"))
        style = {"unrecoverable": "bold red", "partly_filled": "yellow", "filled": "green"}
        t.add_row(
            str(g.get("meter")),
            str(g.get("cause")),
            Text(state, style=style.get(state, "")),
            clock(g.get("start_ms")),
            clock(g.get("end_ms")),
            f"{g.get('recovered', 0)}/{g.get('expected', 0)}",
            str(g.get("missing", 0)),
            f"{float(g.get('progress', 0)) * 100:.0f} %",
        )
    return t


def recent_table(doc: Mapping[str, Any], limit: int = 10) -> Table:
    """The newest events and errors, newest last."""
    recent = doc.get("recent") or {}
    entries = sorted(
        [*recent.get("events", []), *recent.get("errors", [])], key=lambda e: e["seq"]
    )[-limit:]
    t = Table(title="Recent events", title_justify="left")
    for col in ("time", "event", "subject", "reason"):
        t.add_column(col, overflow="fold")
    for e in entries:
        style = {"error": "red", "warning": "yellow"}.get(e.get("level", ""), "")
        kind = e["kind"] + (f" x{e['count']}" if e.get("count", 1) > 1 else "")
        t.add_row(clock(e.get("ts_ms")), Text(kind, style=style), e["subject"], e["reason"])
    return t


def status_view(doc: Mapping[str, Any], meter_limit: int | None = None) -> RenderableType:
    """Everything, top to bottom."""
    parts: list[RenderableType] = [header(doc)]
    if doc.get("buses"):
        parts.append(buses_table(doc))
    if doc.get("concentrators"):
        parts.append(concentrators_table(doc))
    parts.append(meters_table(doc, meter_limit))
    parts.append(buffer_table(doc))
    if (doc.get("gaps") or {}).get("gaps"):
        parts.append(gaps_table(doc))
    parts.append(recent_table(doc))
    return Group(*parts)


def event_line(entry: Mapping[str, Any]) -> str:
    """One recent entry as a plain log line."""
    count = f" (x{entry['count']})" if entry.get("count", 1) > 1 else ""
    reason = f": {entry['reason']}" if entry.get("reason") else ""
    return (
        f"{clock(entry.get('ts_ms'))} {entry.get('level', 'info'):7} "
        f"{entry['kind']} {entry['subject']}{reason}{count}"
    )
