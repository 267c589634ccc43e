"""A bus's health: one bus fault instead of N meter faults.

When every meter that should answer fails with no success on the bus in
between, the line (adapter, cable, DTU) is at fault. Meter events produced
during such a streak are held back until another meter answers (then they
are real meter faults: released and logged) or the bus is declared at fault
(then they are folded into one ``BUS_FAULT``, which counts them, and logged as
such). Nothing is held silently: holding is logged too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.logs import get_logger
from gateway.model import Event, EventKind

log = get_logger("scheduler")


@dataclass(slots=True)
class BusHealth:
    """Fault detection and its held-back meter events, for one bus."""

    name: str
    state: str = "ok"
    """``"ok"`` or ``"fault"``."""
    failed: set[str] = field(default_factory=set)
    """Meters that failed since the last success on the bus."""
    held: list[Event] = field(default_factory=list)
    fault_since_ms: int | None = None
    probes: int = 0

    @property
    def streak_started(self) -> bool:
        """True while failures are accumulating with no success in between."""
        return bool(self.failed)

    def on_success(self, meter_id: str, events: Sequence[Event], ts_ms: int) -> list[Event]:
        """A meter answered: release what was held (logging each), and end a fault."""
        out = list(self.held)
        self.held.clear()
        for ev in out:
            log.info(str(ev.kind), meter=ev.subject, bus=self.name, reason=ev.reason, held=True)
        self.failed.clear()
        if self.state == "fault":
            since = self.fault_since_ms or ts_ms
            out.append(
                Event(
                    EventKind.BUS_RECOVERED,
                    ts_ms,
                    self.name,
                    f"meter {meter_id} answered",
                    {"fault_ms": ts_ms - since, "probes": self.probes},
                )
            )
            self.state = "ok"
            self.fault_since_ms = None
            self.probes = 0
        out.extend(events)
        return out

    def on_failure(
        self,
        meter_id: str,
        events: Sequence[Event],
        ts_ms: int,
        *,
        expected: Iterable[str],
        error: str,
        link_error: bool = False,
    ) -> tuple[list[Event], bool]:
        """A meter failed; returns (events to record now, whether the bus is now at fault).

        ``expected`` are the meters that should answer (not offline). A link
        error (port gone, connection refused) is a bus fault at once.
        """
        if self.state == "fault":
            self.probes += 1
            return [], False
        expected_set = set(expected)
        self.failed.add(meter_id)
        if link_error or (len(expected_set) >= 2 and expected_set <= self.failed):
            dropped = len(self.held) + len(events)
            if dropped:
                log.info(
                    "meter_events_folded_into_bus_fault",
                    bus=self.name,
                    events=[f"{e.kind}:{e.subject}" for e in (*self.held, *events)],
                )
            self.held.clear()
            self.state = "fault"
            self.fault_since_ms = ts_ms
            self.probes = 0
            failed = len(self.failed)
            self.failed.clear()
            detail: dict[str, str | int | float | bool | None] = {
                "meters_failed": failed,
                "meter_events_suppressed": dropped,
                "link_error": link_error,
            }
            return [Event(EventKind.BUS_FAULT, ts_ms, self.name, error, detail)], True
        if len(expected_set) < 2 or meter_id not in expected_set:
            return list(events), False
        for ev in events:
            # Held until another meter answers (a meter fault) or all fail (a bus fault).
            log.info("meter_event_held", kind=str(ev.kind), meter=ev.subject, bus=self.name)
        self.held.extend(events)
        return [], False
