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
        """One screen: header, buses, concentrators, meters (as many as fit), buffer, events."""
        if doc is None:
            return Text("waiting for the gateway's status API...", style="yellow")
        height = self.console.size.height
        buses = len(doc.get("buses", []))
        concentrators = None
        concentrator_lines = 0
        if doc.get("concentrators"):
            concentrators = concentrators_table(doc, limit=CONCENTRATORS_SHOWN)
            # Measured, not counted: its caption may wrap on a narrow terminal.
            concentrator_lines = len(self.console.render_lines(concentrators, pad=False))
        # Leave room for the header, the buses, concentrators, buffer and events tables.
        room = max(3, height - (buses + 6) - concentrator_lines - 8 - 14 - 4)
        parts: list[RenderableType] = [Text(self.title, style="bold cyan"), header(doc)]
        if buses:
            parts.append(buses_table(doc))
        if concentrators is not None:
            parts.append(concentrators)
        parts += [meters_table(doc, limit=room), buffer_table(doc), recent_table(doc, 8)]
        if footer:
            parts.append(Text(footer, style="dim"))
        return Group(*parts)

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
