"""Opt-in time sync: meters' clocks set by broadcast time (DL/T 645: control 0x08).

The policy is here; the broadcast is the reader's (``broadcast_time``), and
only a protocol whose bus model has a ``time_sync`` table
(``BusConfig.time_sync_config``) is asked. After a meter's clock has been read
(``check_clock``), the bus task asks :meth:`TimeSync.due` whether its drift
calls for a broadcast; if so, :meth:`TimeSync.sync` sends the gateway's time,
in the meters' time zone, to the whole line (no reply), reads the meter's
clock again to confirm, and returns a ``time_sync`` event with the drift before and after. The other
meters of the line heard the broadcast too: their clocks are read at their
next poll, so that their drift history (which backfilled records are stamped
through) follows the step.

Never sent unless ``[buses.time_sync] enabled``; at most one broadcast per
``min_interval`` per bus, whatever the meters' clocks say, so that a meter that
does not take the time is not broadcast at every poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from decimal import Decimal

from drivers.errors import DriverError
from gateway.config.southbound import BusConfig, TimeSyncConfig
from gateway.logs import get_logger
from gateway.model import Event, EventKind, Reading
from gateway.scheduler.meters import MeterRun
from gateway.scheduler.recovery import check_clock
from gateway.southbound.reader import MeterReader

log = get_logger("scheduler")


def _seconds(drift_ms: int | None) -> float | None:
    if drift_ms is None:
        return None
    return float((Decimal(drift_ms) / 1000).quantize(Decimal("0.001")))


class TimeSync:
    """The time sync of one bus (one broadcast per ``min_interval`` at most)."""

    def __init__(
        self,
        cfg: BusConfig,
        reader: MeterReader,
        meters: Sequence[MeterRun],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg: TimeSyncConfig = cfg.time_sync_config() or TimeSyncConfig()
        self.bus = cfg
        self.reader = reader
        self.meters = meters
        self._monotonic = monotonic
        self._next_at: float | None = None
        """Monotonic time before which no broadcast is sent (None: never sent yet)."""
        self.sent = 0
        """Broadcasts sent on this bus."""

    def due(self, meter: MeterRun) -> bool:
        """Whether ``meter``'s last measured drift calls for a broadcast now."""
        if not self.cfg.enabled or meter.drift_ms is None:
            return False
        if abs(meter.drift_ms) <= self.cfg.threshold * 1000:
            return False
        if self._next_at is not None and self._monotonic() < self._next_at:
            log.debug("time_sync_deferred", bus=self.bus.name, meter=meter.meter_id)
            return False
        return True

    async def sync(self, meter: MeterRun) -> tuple[list[Reading], list[Event]]:
        """Broadcast the time, re-read ``meter``'s clock; its readings and events."""
        self._next_at = self._monotonic() + self.cfg.min_interval
        before = meter.drift_ms
        try:
            sent = await self.reader.broadcast_time(meter.tz)
        except DriverError as exc:
            log.warning("time_sync_failed", bus=self.bus.name, meter=meter.meter_id, error=str(exc))
            return [], []
        self.sent += 1
        for other in self.meters:
            if other is not meter:
                other.next_clock = 0.0  # read at its next poll: its clock stepped too
        readings, events = await check_clock(
            self.reader,
            meter,
            self.bus.name,
            interval=self.bus.clock_check_interval,
            drift_max=self.bus.clock_drift_max,
        )
        after = meter.drift_ms if readings else None
        confirmed = after is not None and abs(after) <= self.cfg.threshold * 1000
        before_s, after_s = _seconds(before), _seconds(after)
        reason = f"broadcast time: clock was off by {before_s} s, " + (
            f"now {after_s} s" if after is not None else "not read back"
        )
        log.info(
            "meter_time_synced",
            bus=self.bus.name,
            meter=meter.meter_id,
            before_s=before_s,
            after_s=after_s,
            confirmed=confirmed,
        )
        event = Event(
            EventKind.TIME_SYNC,
            int(time.time() * 1000),
            meter.meter_id,
            reason,
            {
                "bus": self.bus.name,
                "before_s": before_s,
                "after_s": after_s,
                "sent": sent.isoformat(),
                "confirmed": confirmed,
            },
        )
        return readings, [*events, event]
