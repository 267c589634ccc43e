"""A live terminal view of a running gateway, fed by its ``/status`` document.

On a terminal: a rich ``Live`` display of meters (state, last reading, last
values), buses, buffer depth per sink and the newest events, redrawn every
second. Anywhere else (a pipe, a CI log, a test): plain lines, one per event
as it happens (a meter going offline, a gap, an error) and a summary line
every few seconds, so the same run reads well in a log file.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from gateway.demo.compact import (
    compact_lines,
    compact_meters_table,
    one_line_rows,
    without_repeated_subject,
)
from gateway.status.render import (
    buffer_table,
    buses_table,
    concentrators_table,
    event_line,
    header,
    meters_table,
    recent_table,
)

CONCENTRATORS_SHOWN = 5
"""Concentrator rows on screen at most (stale ones first); meters get the rest of the room."""
EVENTS_SHOWN = 8
"""Recent events on screen at most."""
BOXED_MIN_HEIGHT = 50
"""Terminals this tall get boxed tables; smaller ones a compact screen."""

Fetch = Callable[[], Awaitable[Mapping[str, Any] | None]]
"""Returns the current ``/status`` document, or ``None`` when there is no answer."""


def summary_line(doc: Mapping[str, Any]) -> str:
    """One plain line: readings, meters by state, buffer depth per sink."""
    states = Counter(str(m.get("state", "unknown")) for m in doc.get("meters", []))
    meters = " ".join(f"{k}={v}" for k, v in sorted(states.items())) or "none"
    buf = doc.get("buffer") or {}
    sinks = " ".join(
        f"{s['name']}={s.get('depth', 0)}"
        + (f"/{s.get('oldest_unsent_age_s', 0):.0f}s" if s.get("depth") else "")
        for s in buf.get("sinks", [])
    )
    ready = "ready" if doc.get("gateway", {}).get("ready") else "not-ready"
    return (
        f"{time.strftime('%H:%M:%S')} {ready} readings={doc.get('readings_accepted', 0)} "
        f"meters[{meters}] buffer_rows={buf.get('rows', 0)} depth[{sinks or '-'}]"
    )


class LiveView:
    """Shows a gateway's status until told to stop."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        interactive: bool | None = None,
        period: float = 1.0,
        summary_every: float = 5.0,
        title: str = "metergw",
    ) -> None:
        self.console = console or Console()
        self.interactive = self.console.is_terminal if interactive is None else interactive
        self.period = period
        self.summary_every = summary_every
        self.title = title
        self.last_doc: Mapping[str, Any] | None = None
        self._seen_seq = 0
        self._last_summary = 0.0

    def new_entries(self, doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Recent events and errors not shown yet, oldest first."""
        recent = doc.get("recent") or {}
        entries = sorted(
            (e for e in [*recent.get("events", []), *recent.get("errors", [])]),
            key=lambda e: int(e["seq"]),
        )
        fresh = [e for e in entries if int(e["seq"]) > self._seen_seq]
        if entries:
            self._seen_seq = max(self._seen_seq, int(entries[-1]["seq"]))
        return fresh

    def frame(self, doc: Mapping[str, Any] | None, footer: str = "") -> RenderableType:
        """One screen that fits the terminal: header, buses, concentrators, meters, buffer, events.

        Meters come problems first and events newest last, so what is cut when
        the terminal is small is healthy meters and old events. Below
        :data:`BOXED_MIN_HEIGHT` lines the tables lose their boxes and the
        buses, concentrators and buffer take one line each, so that an 80x24
        terminal still shows the meters' problems and the recent events.
        """
        if doc is None:
            return Text("waiting for the gateway's status API...", style="yellow")
        doc = without_repeated_subject(doc)
        height = self.console.size.height
        boxed = height >= BOXED_MIN_HEIGHT
        if boxed:
            top: list[RenderableType] = [Text(self.title, style="bold cyan"), header(doc)]
            if doc.get("buses"):
                top.append(buses_table(doc))
            if doc.get("concentrators"):
                top.append(concentrators_table(doc, limit=CONCENTRATORS_SHOWN))
            middle: list[RenderableType] = [buffer_table(doc)]
        else:
            top = [header(doc), *compact_lines(doc)]
            middle = []
        bottom: list[RenderableType] = [Text(footer, style="dim")] if footer else []

        def screen(meter_rows: int, event_rows: int) -> list[RenderableType]:
            if boxed:
                meters = one_line_rows(meters_table(doc, limit=meter_rows))
            else:
                meters = compact_meters_table(doc, meter_rows)
            # recent_table(doc, 0) would mean "all": no rows is an empty list.
            events_doc = doc if event_rows else {**doc, "recent": {}}
            events = one_line_rows(recent_table(events_doc, max(1, event_rows)), boxed)
            return [*top, meters, *middle, events, *bottom]

        def lines(parts: list[RenderableType]) -> int:
            return len(self.console.render_lines(Group(*parts), pad=False))

        total_meters = len(doc.get("meters", []))
        recent = doc.get("recent") or {}
        total_events = len(recent.get("events", [])) + len(recent.get("errors", []))
        # What is left once both tables show no rows at all, shared out: events get
        # up to a third (at least 3), meters the rest.
        room = height - lines(screen(0, 0))
        events = min(total_events, max(3, room // 3), EVENTS_SHOWN)
        meters = max(0, min(total_meters, room - events))
        # Measure and shrink: a caption ("N more meters") or a wrapped header takes lines.
        while lines(screen(meters, events)) > height and (meters > 1 or events > 1):
            if meters > 1:
                meters -= 1
            else:
                events -= 1
        return Group(*screen(meters, events))

    def plain(self, doc: Mapping[str, Any] | None) -> None:
        """Print what is new as plain lines."""
        if doc is None:
            return
        for e in self.new_entries(doc):
            self.console.print(event_line(e), markup=False, highlight=False, soft_wrap=True)
        now = time.monotonic()
        if now - self._last_summary >= self.summary_every:
            self._last_summary = now
            self.console.print(summary_line(doc), markup=False, highlight=False, soft_wrap=True)

    async def run(self, fetch: Fetch, stop: asyncio.Event, footer: str = "") -> None:
        """Poll ``fetch`` every ``period`` seconds and show it until ``stop`` is set."""
        if not self.interactive:
            while not stop.is_set():
                doc = await fetch()
                if doc is not None:
                    self.last_doc = doc
                self.plain(doc)
                await _wait(stop, self.period)
            return
        with Live(
            self.frame(None), console=self.console, auto_refresh=False, transient=False
        ) as live:
            while not stop.is_set():
                doc = await fetch()
                if doc is not None:
                    self.last_doc = doc
                    self.new_entries(doc)
                live.update(self.frame(doc, footer), refresh=True)
                await _wait(stop, self.period)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass
