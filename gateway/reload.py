"""What a new config changes in a running daemon (SIGHUP), decided before anything moves.

A reload never stops what did not change: a bus whose line, meters and poll groups are
the same keeps polling (its schedule, health and in-flight commits untouched), a sink
whose settings are the same keeps forwarding. Changed buses, sinks and the ingest are
restarted; nothing accepted is lost on the way (a bus's submitted polls still commit, a
forwarder's cursor moves only after its sink confirmed, an unacknowledged concentrator
message is sent again by the broker).

Sections the running daemon cannot swap in place (the gateway's identity and state
directory, the buffer, the status API, the embedded broker, logging, validation) are
reported as needing a restart and keep their old values until then.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.model import Config

RESTART_SECTIONS = ("gateway", "buffer", "http", "embedded_broker", "logging", "validation")
"""Sections a reload does not apply: a change to them waits for the next start."""


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What to restart, and what the reload cannot apply."""

    config: Config
    """The config to run with: the new one, with :data:`RESTART_SECTIONS` kept as they were."""
    buses: tuple[str, ...]
    """Buses to (re)start or stop: changed, added or removed, by name."""
    sinks: tuple[str, ...]
    """Sinks to (re)start or stop, by name."""
    ingest: bool
    """Whether the concentrator ingest restarts (or starts, or stops)."""
    needs_restart: tuple[str, ...]
    """Changed sections that wait for the next start."""

    @property
    def empty(self) -> bool:
        """Nothing to do."""
        return not (self.buses or self.sinks or self.ingest or self.needs_restart)

    def describe(self) -> str:
        """One line for the log and the event."""
        parts = []
        if self.buses:
            parts.append(f"buses {', '.join(self.buses)}")
        if self.sinks:
            parts.append(f"sinks {', '.join(self.sinks)}")
        if self.ingest:
            parts.append("ingest")
        applied = "restarted " + "; ".join(parts) if parts else "nothing to restart"
        if self.needs_restart:
            applied += f"; {', '.join(self.needs_restart)} changed: applied at the next start"
        return applied


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare two valid configs; see the module docstring."""
    needs_restart = tuple(s for s in RESTART_SECTIONS if getattr(old, s) != getattr(new, s))
    kept = new.model_copy(update={s: getattr(old, s) for s in needs_restart})
    old_buses = {b.name: b for b in old.buses}
    new_buses = {b.name: b for b in new.buses}

    def groups_of(cfg: Config, name: str) -> dict[str, object]:
        bus = {b.name: b for b in cfg.buses}[name]
        used = {g for m in bus.meters for g in m.poll}
        return {g: cfg.poll_groups.get(g) for g in sorted(used)}

    buses = tuple(
        name
        for name in sorted(old_buses.keys() | new_buses.keys())
        if old_buses.get(name) != new_buses.get(name)
        or (
            name in old_buses and name in new_buses and groups_of(old, name) != groups_of(new, name)
        )
    )
    sink_names = sorted({*old.sinks.names(), *new.sinks.names()})
    sinks = tuple(n for n in sink_names if old.sinks.get(n) != new.sinks.get(n))
    return ReloadPlan(kept, buses, sinks, old.ingest != new.ingest, needs_restart)
