"""What ``/status`` and ``/readyz`` say, gathered from the running parts.

The daemon attaches its parts as they start (buffer, scheduler, ingest,
sinks); every answer is computed when asked, from the parts' own snapshots,
so there is no second copy of state to drift.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import platform
import shutil
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

from gateway.metrics import Metrics
from gateway.status.recent import RecentEvents
from gateway.status.tap import Tap

if TYPE_CHECKING:
    from gateway.writepath import WritePath

STALE_AFTER_MS = 10 * 60 * 1000
"""A concentrator, or one of its meters, with nothing received for this long shows as ``stale``."""

MIN_FREE_BYTES = 16 * 1024 * 1024
"""Below this much free space next to the buffer, the gateway is not ready."""


def gateway_version() -> str:
    """The installed metergw version (``0+unknown`` when run from a bare tree)."""
    try:
        return metadata.version("metergw")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def plain(obj: Any) -> Any:
    """Dataclasses, enums, decimals, mappings and sequences -> JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


class SchedulerView(Protocol):
    """What the status needs from the scheduler."""

    @property
    def started(self) -> Any: ...

    def snapshot(self) -> Any: ...


class BufferView(Protocol):
    """What the status needs from the buffer."""

    def stats(self) -> Any: ...


class GapsView(Protocol):
    """What the status needs from the gap ledger."""

    def to_json(self, now_ms: int) -> Any: ...


class IngestView(Protocol):
    """What the status needs from concentrator ingest (and ``refused``, when it has one)."""

    @property
    def connected(self) -> Any: ...


class SinkView(Protocol):
    """What the status needs from a sink (and ``refused``, when it has one)."""

    name: str


def refused(part: Any) -> str | None:
    """Why a part's server does not let it in (a refused login or certificate), if it says."""
    reason = getattr(part, "refused", None)
    return reason if isinstance(reason, str) and reason else None


class StatusModel:
    """The daemon's state as the operator sees it."""

    def __init__(
        self,
        name: str,
        metrics: Metrics,
        recent: RecentEvents,
        tap: Tap | None = None,
        buffer_path: str | None = None,
    ) -> None:
        self.name = name
        self.metrics = metrics
        self.recent = recent
        self.tap = tap
        self.writes: WritePath | None = None
        """The write path, for the commits in flight."""
        self.buffer_path = buffer_path
        self.started_at = time.time()
        self.version = gateway_version()
        self.buffer: BufferView | None = None
        self.scheduler: SchedulerView | None = None
        self.ingest: IngestView | None = None
        self.gaps: GapsView | None = None
        """The gap ledger: open and filling gaps with their progress, recent finished ones."""
        self.sinks: list[str] = []
        self.sink_parts: Sequence[SinkView] = ()
        """The running sinks, for the readiness reasons they give (a refused login)."""
        self.stopping = False
        metrics.build_info.labels(self.version, platform.python_version()).set(1)
        metrics.start_time.set(self.started_at)

    # Readiness -----------------------------------------------------------

    def readiness(self) -> list[str]:
        """Why the gateway is not ready to accept readings; empty when it is."""
        reasons: list[str] = []
        if self.stopping:
            reasons.append("shutting down")
        if self.buffer is None:
            reasons.append("buffer is not open")
        else:
            try:
                self.buffer.stats()
            except Exception as exc:
                reasons.append(f"buffer cannot be read: {exc}")
            if self.tap is not None and self.tap.last_error is not None:
                reasons.append(f"buffer is not writable: {self.tap.last_error}")
            if self.buffer_path is not None:
                free = _free_bytes(self.buffer_path)
                if free is not None and free < MIN_FREE_BYTES:
                    reasons.append(
                        f"only {free // 1024} KiB free for the buffer at {self.buffer_path}"
                    )
        if self.scheduler is not None and not _is_set(self.scheduler.started):
            reasons.append("buses are not started")
        # Refused credentials or certificates do not pass by retrying: not ready until
        # a login succeeds (an unreachable server is no reason: data waits for it).
        if (why := refused(self.ingest)) is not None:
            reasons.append(f"ingest: {why}")
        for sink in self.sink_parts:
            if (why := refused(sink)) is not None:
                reasons.append(f"sink {sink.name}: {why}")
        self.metrics.ready.set(0 if reasons else 1)
        return reasons

    # Status --------------------------------------------------------------

    def buffer_json(self, now_ms: int) -> dict[str, Any] | None:
        """Buffer size and, per sink, depth and age of the oldest unsent reading."""
        if self.buffer is None:
            return None
        try:
            stats = plain(self.buffer.stats())
        except Exception as exc:
            return {"error": str(exc)}
        sinks = stats.get("sinks") or {}
        out_sinks = []
        for name, s in sorted(sinks.items()):
            oldest = s.get("oldest_unsent_ms")
            age = max(0.0, (now_ms - oldest) / 1000) if oldest and s.get("depth") else 0.0
            out_sinks.append({"name": name, **s, "oldest_unsent_age_s": round(age, 3)})
            self.metrics.buffer_oldest_unsent_age.labels(name).set(age)
        stats["sinks"] = out_sinks
        return dict(stats)

    def sinks_json(self) -> list[dict[str, Any]]:
        """The running sinks, each with why its server refuses our writes (a login, a
        certificate) when it does."""
        return [{"name": s.name, "refused": refused(s)} for s in self.sink_parts]

    def meters_json(self, buses: Sequence[Mapping[str, Any]], now_ms: int) -> list[dict[str, Any]]:
        """Every meter: polled ones with their state, concentrator ones as seen."""
        seen = self.tap.meters if self.tap is not None else {}
        out: list[dict[str, Any]] = []
        polled: set[str] = set()
        for bus in buses:
            for m in bus.get("meters") or []:
                mid = str(m.get("meter_id", m.get("meter", "")))
                polled.add(mid)
                row = {"meter": mid, "bus": bus.get("name"), "protocol": bus.get("protocol")}
                row.update({k: v for k, v in m.items() if k not in ("meter_id", "meter")})
                row.update(_seen_json(seen.get(mid)))
                out.append(row)
        for mid in sorted(set(seen) - polled):
            s = seen[mid]
            out.append(
                {"meter": mid, "bus": None, "protocol": "concentrator"}
                | {"state": _reporting(s.received_ms, now_ms), "topic": s.source}
                | _seen_json(s)
            )
        return out

    def concentrators_json(self, now_ms: int) -> list[dict[str, Any]]:
        """Every concentrator (MQTT topic): what it sent, and whether it still reports."""
        if self.tap is None:
            return []
        return [
            plain(c) | {"state": _reporting(c.received_ms, now_ms)}
            for _, c in sorted(self.tap.concentrators.items())
        ]

    def snapshot(self) -> dict[str, Any]:
        """The whole ``/status`` document."""
        now = time.time()
        now_ms = int(now * 1000)
        reasons = self.readiness()
        buses: list[dict[str, Any]] = []
        if self.scheduler is not None:
            snap = plain(self.scheduler.snapshot())
            raw_buses = snap.get("buses", []) if isinstance(snap, dict) else snap
            buses = [dict(b) for b in raw_buses]
        meters = self.meters_json(buses, now_ms)
        bus_rows = []
        for b in buses:
            ms = b.get("meters") or []
            bus_rows.append(
                {k: v for k, v in b.items() if k != "meters"}
                | {
                    "meters": len(ms),
                    "online": sum(1 for m in ms if m.get("state") == "online"),
                }
            )
        tap = self.tap
        ingest: dict[str, Any] | None = None
        if self.ingest is not None:
            ingest = {"connected": _is_set(self.ingest.connected), "refused": refused(self.ingest)}
        return {
            "gateway": {
                "name": self.name,
                "version": self.version,
                "started_ms": int(self.started_at * 1000),
                "now_ms": now_ms,
                "uptime_s": round(now - self.started_at, 3),
                "ready": not reasons,
                "not_ready": reasons,
                "stopping": self.stopping,
            },
            "buses": bus_rows,
            "meters": meters,
            "concentrators": self.concentrators_json(now_ms),
            # Concentrator meters beyond the detail limit are counted in "concentrators" only.
            "concentrator_meters_detail_limit": tap.detail_limit if tap is not None else None,
            "concentrator_meters_truncated": tap is not None and tap.concentrator_meters_truncated,
            "concentrator_readings_not_detailed": tap.rows_not_detailed if tap is not None else 0,
            "buffer": self.buffer_json(now_ms),
            "gaps": self.gaps.to_json(now_ms) if self.gaps is not None else None,
            "readings_accepted": tap.accepted if tap is not None else 0,
            "commits_in_flight": self.writes.in_flight if self.writes is not None else 0,
            "ingest": ingest,
            "sinks": self.sinks_json(),
            "recent": self.recent.to_json(),
        }

    def refresh_metrics(self) -> None:
        """Bring gauges computed from state up to date before a scrape."""
        self.readiness()
        self.buffer_json(int(time.time() * 1000))
        if self.ingest is not None:
            self.metrics.ingest_connected.set(1 if _is_set(self.ingest.connected) else 0)


def _is_set(flag: Any) -> bool:
    """An ``asyncio.Event``-like flag or a plain bool."""
    if hasattr(flag, "is_set"):
        return bool(flag.is_set())
    return bool(flag)


def _reporting(received_ms: int, now_ms: int) -> str:
    return "stale" if now_ms - received_ms > STALE_AFTER_MS else "reporting"


def _seen_json(seen: Any) -> dict[str, Any]:
    if seen is None:
        return {"last_reading_ms": None, "readings": 0, "values": {}}
    return {
        "last_reading_ms": seen.last_reading_ms or None,
        "readings": seen.readings,
        "values": {
            k: {"v": float(v), "u": unit, "q": q} for k, (v, unit, q, _) in seen.values.items()
        },
    }


def _free_bytes(path: str) -> int | None:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None
