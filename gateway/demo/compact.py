"""The live view's pieces for a small terminal (80x24): one line per row, no boxes.

Works on the ``/status`` document like :mod:`gateway.status.render`, whose
tables the live view uses on a tall terminal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from gateway.status.render import SHOWN_KEYS, age, state_text

_PROBLEMS_FIRST = {"offline": 0, "fault": 0, "suspect": 1, "stale": 1}
"""The order of ``metergw status``'s meters table: the live view shows the same meters first."""

_FLEXIBLE = {"via": 1, "values": 2, "problem": 4, "problem or values": 4, "reason": 1}
"""Columns that share what room is left (in these ratios) and are cut with an ellipsis."""


def without_repeated_subject(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The document with ``meter X on LINE: `` cut from meters' errors and event reasons.

    The meter and its line have columns of their own; on a narrow screen the
    words after the prefix (``no reply to DI ...``) are the ones worth the room.
    """

    def cut(text: Any, meter: Any) -> Any:
        if isinstance(text, str) and text.startswith(f"meter {meter} on "):
            _, sep, rest = text.partition(": ")
            return rest if sep else text
        return text

    meters = [
        {**m, "last_error": cut(m.get("last_error"), m.get("meter"))} for m in doc.get("meters", [])
    ]
    recent = doc.get("recent") or {}
    trimmed = {
        k: [{**e, "reason": cut(e.get("reason"), e.get("subject"))} for e in recent.get(k, [])]
        for k in ("events", "errors")
    }
    return {**doc, "meters": meters, "recent": trimmed}


def one_line_rows(table: Table, boxed: bool = True) -> Table:
    """Every row on one line: the fixed columns keep their width, long text is cut."""
    table.expand = True
    for col in table.columns:
        col.no_wrap = True
        col.overflow = "ellipsis"
        # A meter's problem matters more than its values on a narrow terminal.
        col.ratio = _FLEXIBLE.get(str(col.header))
    if not boxed:
        table.box = None
        table.pad_edge = False
        table.header_style = "bold"
        table.caption_justify = "left"
        table.title_justify = "left"
        table.title_style = "bold"
    return table


def compact_meters_table(doc: Mapping[str, Any], limit: int) -> Table:
    """Meters, problems first, one line each: the problem if there is one, else the values."""
    now = doc.get("gateway", {}).get("now_ms")
    meters: Sequence[Mapping[str, Any]] = doc.get("meters", [])
    rows = sorted(
        meters,
        key=lambda m: (_PROBLEMS_FIRST.get(m.get("state", ""), 2), str(m.get("meter"))),
    )
    t = Table(title="Meters")
    for col in ("meter", "via", "state", "last", "problem or values"):
        t.add_column(col)
    for m in rows[:limit]:
        problem = m.get("last_error") or ""
        if m.get("misses"):
            problem = f"{m['misses']} missed: {problem}".rstrip(": ")
        detail = Text(problem, style="red") if problem else Text(_values(m.get("values") or {}))
        t.add_row(
            str(m.get("meter")),
            str(m.get("bus") or m.get("topic") or ""),
            state_text(m.get("state")),
            age(m.get("last_reading_ms"), now).removesuffix(" ago"),
            detail,
        )
    if len(rows) > limit:
        t.caption = f"{len(rows) - limit} more meters not shown"
    return one_line_rows(t, boxed=False)


def _values(values: Mapping[str, Any]) -> str:
    shown = [values[k] for k in SHOWN_KEYS if values.get(k) is not None][:3]
    return "  ".join(f"{v['v']:.10g} {v.get('u', '')}".strip() for v in shown) or "-"


def compact_lines(doc: Mapping[str, Any]) -> list[Text]:
    """Buses, concentrators and the buffer, one line each."""
    out: list[Text] = []
    buses = doc.get("buses") or []
    if buses:
        t = Text("Buses ", style="bold")
        for i, b in enumerate(buses):
            util = b.get("utilisation")
            t.append(("  " if i else "") + f"{b.get('name')} ")
            t.append_text(state_text(b.get("state")))
            pct = f" {util * 100:.0f}%" if isinstance(util, int | float) else ""
            t.append(f"{pct} {b.get('online', 0)}/{b.get('meters', 0)}")
        out.append(t)
    concs = doc.get("concentrators") or []
    if concs:
        states = Counter(str(c.get("state", "unknown")) for c in concs)
        t = Text("Concentrators ", style="bold")
        for i, (state, n) in enumerate(sorted(states.items())):
            t.append(", " if i else "")
            t.append(f"{n} ")
            t.append_text(state_text(state))
        stale = [str(c.get("topic")) for c in concs if c.get("state") == "stale"]
        if stale:
            t.append(": " + ", ".join(stale[:3]) + (" ..." if len(stale) > 3 else ""))
        out.append(t)
    buf = doc.get("buffer") or {}
    t = Text("Buffer ", style="bold")
    t.append(f"{buf.get('rows', 0)} rows {buf.get('bytes', 0) / 1e6:.1f} MB")
    for s in buf.get("sinks", []):
        depth = int(s.get("depth", 0))
        t.append(f"  {s.get('name')} ")
        t.append(str(depth), style="yellow" if depth > 1000 else "")
        t.append(f" behind, oldest {s.get('oldest_unsent_age_s', 0):.0f} s" if depth else " behind")
    t.append(f"  {buf.get('dropped', 0)} dropped, {buf.get('quarantined', 0)} quarantined")
    out.append(t)
    return out
