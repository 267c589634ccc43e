"""Per-meter poll state: its groups and when each is due, health, clock drift."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from gateway.config.southbound import BusConfig, MeterConfig, PollGroupConfig
from gateway.gaps import GapCause
from gateway.health import DriftSample, MeterHealth, MeterState
from gateway.model import Reading
from protocols.quantities import is_cumulative

_RANK = {MeterState.ONLINE: 0, MeterState.UNKNOWN: 1, MeterState.SUSPECT: 2}
"""Called for every meter at every step of a bus: one table, not a dict per call."""


@dataclass(slots=True)
class GroupRun:
    """A poll group of one meter: keys, interval and the next due time (epoch s)."""

    name: str
    interval: float
    keys: tuple[str, ...]
    cumulative: bool
    next_due: float
    skipped: int = 0
    """Ticks coalesced away because the bus was late."""


@dataclass(slots=True)
class MeterRun:
    """One meter on a bus, as its bus task tracks it."""

    cfg: MeterConfig
    tz: str
    groups: list[GroupRun]
    health: MeterHealth
    next_clock: float = 0.0
    """When the clock is read next (epoch s; 0: at first contact)."""
    drift_ms: int | None = None
    drifts: list[DriftSample] = field(default_factory=list)
    """The last clock readings, oldest first (bounded): records are stamped through them."""
    drift_alarm: bool = False
    gap_pending: bool = False
    """The bus was at fault (or the gateway down): check for a gap at the next answer."""
    gap_cause: GapCause = GapCause.BUS_FAULT
    """Why, for the gap ledger."""
    polls: list[int] = field(default_factory=list)
    """Start times (ms) of the last successful polls, newest last (bounded)."""
    stored_ms: int | None = None
    """Start time (ms) of the newest poll whose readings were committed."""
    registers: dict[str, tuple[int, Decimal, str]] = field(default_factory=dict)
    """The newest value read of each energy register: (ms, value, unit). What a gap's
    records cannot give, these bound: the energy consumed across it."""

    @property
    def meter_id(self) -> str:
        return self.cfg.meter_id

    @property
    def address(self) -> str:
        return self.cfg.ident

    def due(self, probe_from: float = math.inf) -> float:
        """When this meter should be polled next (epoch s). An offline meter waits for its
        backoff, or for its next tick once the bus has probe time (from ``probe_from``)."""
        if not self.groups:
            return math.inf  # read on demand only
        tick = min((g.next_due for g in self.groups), default=math.inf)
        if self.health.state is MeterState.OFFLINE:
            return min(self.health.retry_at, max(tick, probe_from))
        return tick

    def rank(self) -> int:
        """Among meters due at once, answering ones go first: dead ones cost the rest."""
        return _RANK.get(self.health.state, 3)

    def cumulative_interval(self) -> float | None:
        """The shortest interval of a group that reads energy registers."""
        return min((g.interval for g in self.groups if g.cumulative), default=None)

    def note_drift(self, at_ms: int, drift_ms: int) -> None:
        """A clock reading: the meter's drift now, kept with the last few."""
        self.drift_ms = drift_ms
        self.drifts.append(DriftSample(at_ms, drift_ms))
        del self.drifts[:-8]

    def note_registers(self, readings: Iterable[Reading]) -> None:
        """Keep the newest value of each energy register among ``readings``."""
        for r in readings:
            if is_cumulative(r.key):
                self.registers[r.key] = (r.ts_ms, r.value, r.unit)

    def all_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for g in self.groups for k in g.keys))


def build_meters(
    bus: BusConfig, groups: Mapping[str, PollGroupConfig], default_tz: str
) -> list[MeterRun]:
    """The meters of ``bus``; every group is due at once at start-up.

    The start-up poll serves the tick in progress (a 15-minute group started
    at 10:07 reads at once for 10:00, then at 10:15).
    """
    now = time.time()
    out: list[MeterRun] = []
    for m in bus.meters:
        runs = [
            GroupRun(
                name,
                groups[name].interval,
                tuple(groups[name].quantities),
                any(is_cumulative(k) for k in groups[name].quantities),
                math.floor(now / groups[name].interval) * groups[name].interval,
            )
            for name in m.poll
        ]
        shortest = min((g.interval for g in runs), default=60.0)
        health = MeterHealth(
            m.meter_id,
            suspect_after=bus.suspect_after,
            offline_after=bus.offline_after,
            backoff_base=shortest,
            backoff_max=max(bus.offline_backoff_max, shortest),
        )
        out.append(MeterRun(m, m.timezone or default_tz, runs, health))
    return out
