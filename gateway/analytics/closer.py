"""The daemon's daily close: at each local midnight of the meters' zones (plus a margin
for the meters' daily freezes), each meter's day is computed from the local store and
its figures submitted as derived readings (:mod:`gateway.analytics.derived`), so they
are buffered and forwarded like any reading."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import zoneinfo
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Protocol

from gateway.analytics.daily import TOTAL_KEY, DailyFigures
from gateway.analytics.derived import SOURCE, derived_readings
from gateway.analytics.stored import daily_from_store
from gateway.buffer import WriteJob
from gateway.config import Config
from gateway.forward.local import local_path, open_local
from gateway.logs import get_logger
from gateway.model import rows_of

log = get_logger("analytics")

MARGIN_S = 300.0
"""How long after a midnight the day is closed: the meters' daily freezes, the last
polls and the local sink's flush land first."""


class Submitter(Protocol):
    """The write path (:class:`gateway.buffer.JobStore`)."""

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]: ...


class DailyCloser:
    """Closes each meter's day in its own zone; ``config`` is read at every close (reload)."""

    def __init__(
        self,
        config: Callable[[], Config],
        store: Submitter,
        *,
        margin_s: float = MARGIN_S,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._margin = margin_s
        self._now = now
        self._closed: dict[str, date] = {}
        """Zone name -> the last day closed in it."""

    def meters(self) -> dict[str, str]:
        """Configured meter id -> zone name, plus concentrator meters (``proto:ADDRESS``)
        found in the store, in the gateway's zone."""
        cfg = self._config()
        zones = {
            m.meter_id: m.timezone or cfg.gateway.timezone for b in cfg.buses for m in b.meters
        }
        if cfg.ingest is not None:
            for meter in self._stored_ids():
                zones.setdefault(meter, cfg.gateway.timezone)
        return zones

    def _stored_ids(self) -> list[str]:
        try:
            conn = open_local(local_path(self._config()), readonly=True)
        except sqlite3.Error:
            return []
        try:
            since = int((self._now() - 2 * 86_400) * 1000)
            rows = conn.execute(
                "SELECT DISTINCT meter FROM local_readings WHERE key = ? AND ts_ms >= ?",
                (TOTAL_KEY, since),
            )
            return [r[0] for r in rows if ":" in r[0]]
        finally:
            conn.close()

    def due(self, zone: str) -> date:
        """The last day of ``zone`` whose close (next midnight + margin) has passed."""
        local = datetime.fromtimestamp(self._now() - self._margin, zoneinfo.ZoneInfo(zone))
        return local.date() - timedelta(days=1)

    def next_wake(self) -> float:
        """When the next zone's day closes (epoch seconds)."""
        wakes = []
        for zone in set(self.meters().values()) or {self._config().gateway.timezone}:
            tz = zoneinfo.ZoneInfo(zone)
            midnight = datetime.combine(self.due(zone) + timedelta(days=2), datetime.min.time())
            wakes.append(midnight.replace(tzinfo=tz).timestamp() + self._margin)
        return min(wakes)

    async def close_due(self, *, catch_up: bool = False) -> int:
        """Store the figures of every day that closed since the last call; how many
        meter-days were stored. ``catch_up``: the first call after a start also stores
        yesterday's figures of meters that have none stored (the daemon was down)."""
        stored = 0
        for meter, zone in sorted(self.meters().items()):
            day = self.due(zone)
            if self._closed.get(zone, date.min) >= day and not catch_up:
                continue
            stored += await self._close(meter, zone, day, only_if_missing=catch_up)
        for zone in set(self.meters().values()):
            self._closed[zone] = self.due(zone)
        return stored

    async def _close(self, meter: str, zone: str, day: date, *, only_if_missing: bool) -> int:
        path = local_path(self._config())
        tz = zoneinfo.ZoneInfo(zone)

        def compute() -> DailyFigures | None:
            if not os.path.exists(path):
                # A first start: the local store is made by its sink's first write and holds
                # no day yet. Nothing to close, nothing to warn about.
                return None
            conn = open_local(path, readonly=True)
            try:
                figures = daily_from_store(conn, meter, day, tz)
                if (
                    only_if_missing
                    and conn.execute(
                        "SELECT 1 FROM local_readings WHERE meter = ? AND key = ? AND ts_ms = ?",
                        (meter, "daily_completeness", figures.start_ms),
                    ).fetchone()
                ):
                    return None
                return figures
            finally:
                conn.close()

        try:
            figures = await asyncio.to_thread(compute)
        except sqlite3.Error as exc:
            log.warning("daily_close_unreadable", meter=meter, day=str(day), error=str(exc))
            return 0
        if figures is None or not figures.has_data:
            return 0
        readings = derived_readings(figures, int(self._now() * 1000))
        job = await self._store.submit(
            WriteJob(rows=rows_of(readings), origin=SOURCE, subject=meter)
        )
        log.info(
            "daily_closed",
            meter=meter,
            day=str(day),
            completeness=float(figures.completeness),
            quality="+".join(figures.quality.names()) or "ok",
            outcome=str(job.outcome),
        )
        return 1

    async def run(self) -> None:
        """Close days as they end, until cancelled."""
        await self.close_due(catch_up=True)
        while True:
            # Sleeping until a wall-clock instant, not waiting for a state: re-read the
            # clock each time round (a stepped clock only shifts the wake).
            await asyncio.sleep(max(0.0, self.next_wake() - self._now()))
            await self.close_due()


def daily_closer(config: Callable[[], Config], store: Submitter) -> DailyCloser | None:
    """The daemon's closer, or None without an enabled ``[sinks.local]`` (its input)."""
    if "local" not in config().sinks.enabled():
        log.info("daily_analytics_off", reason="needs [sinks.local]")
        return None
    return DailyCloser(config, store)
