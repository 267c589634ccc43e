"""Frozen views of the scheduler's state, for ``/status`` and the CLI."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MeterSnapshot:
    """One meter as the scheduler sees it."""

    meter_id: str
    address: str
    """DL/T 645 address or Modbus unit id (as text)."""
    state: str
    """``unknown``, ``online``, ``suspect`` or ``offline``."""
    last_ok_ms: int | None
    last_error: str | None
    misses: int
    next_poll_ms: int | None


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """One poll group on one bus: how well it keeps its interval."""

    name: str
    interval_s: float
    polls: int
    """Polls that served it since start."""
    skipped: int
    """Ticks missed because the bus was busy (coalesced into a later poll)."""
    late: int
    """Polls that started over a tenth of the interval after their tick."""


@dataclass(frozen=True, slots=True)
class BusSnapshot:
    """One bus and its meters."""

    name: str
    protocol: str
    state: str
    """``ok`` or ``fault``."""
    utilisation: float
    """Busy share of the last minute, 0..1."""
    link: str
    """Port path or ``host:port``."""
    meters: tuple[MeterSnapshot, ...]
    groups: tuple[GroupSnapshot, ...] = ()
    cycle_s: float | None = None
    """About how long one pass over every polled meter takes."""


@dataclass(frozen=True, slots=True)
class SchedulerSnapshot:
    """Every bus."""

    buses: tuple[BusSnapshot, ...]
