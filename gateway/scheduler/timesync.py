"""Opt-in time sync: DL/T 645 meters' clocks set by broadcast time (control 0x08).

After a meter's clock has been read (``check_clock``), the bus task asks
:meth:`TimeSync.due` whether its drift calls for a broadcast; if so,
:meth:`TimeSync.sync` sends the gateway's time, in the meters' time zone, to the
whole line (``99..99``, no reply), reads the meter's clock again to confirm,
and returns a ``time_sync`` event with the drift before and after. The other
meters of the line heard the broadcast too: their clocks are read at their
next poll, so that their drift history (which backfilled records are stamped
through) follows the step.

Never sent unless ``[buses.time_sync] enabled``; at most one broadcast per
``min_interval`` per bus, whatever the meters' clocks say, so that a meter that
does not take the time is not broadcast at every poll.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable, Sequence
from decimal import Decimal

from drivers.errors import DriverError
from gateway.config.southbound import BusConfig
from gateway.health import utc_ms_to_meter_time
from gateway.logs import get_logger
from gateway.model import Event, EventKind, Reading
from gateway.scheduler.meters import MeterRun
from gateway.scheduler.readers import Dlt645Reader, MeterReader
from gateway.scheduler.recovery import check_clock

log = get_logger("scheduler")

_FRAME_BYTES = 4 + 18
"""Wake-up bytes and the broadcast frame: its time on the wire is allowed for."""


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
        self.cfg = cfg.time_sync
        self.bus = cfg
        self.reader = reader
        self.meters = meters
        self._monotonic = monotonic
        self._next_at: float | None = None
        """Monotonic time before which no broadcast is sent (None: never sent yet)."""
        self.sent = 0
        """Broadcasts sent on this bus."""
        serial = cfg.serial
        bits = 11 if serial is None or serial.parity != "N" else 10
        self._wire_s = _FRAME_BYTES * bits / serial.baud if serial is not None else 0.0

    def due(self, meter: MeterRun) -> bool:
        """Whether ``meter``'s last measured drift calls for a broadcast now."""
        if not self.cfg.enabled or meter.drift_ms is None:
            return False
        if not isinstance(self.reader, Dlt645Reader):
            return False
        if abs(meter.drift_ms) <= self.cfg.threshold * 1000:
            return False
        if self._next_at is not None and self._monotonic() < self._next_at:
            log.debug("time_sync_deferred", bus=self.bus.name, meter=meter.meter_id)
            return False
        return True

    async def sync(self, meter: MeterRun) -> tuple[list[Reading], list[Event]]:
        """Broadcast the time, re-read ``meter``'s clock; its readings and events."""
        assert isinstance(self.reader, Dlt645Reader)
        self._next_at = self._monotonic() + self.cfg.min_interval
        before = meter.drift_ms
        try:
            sent = await self._broadcast(meter.tz)
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

    async def _broadcast(self, tz: str) -> datetime.datetime:
        """Send the time the meters will hear it at: the next whole second, as the
        frame's last byte arrives (the broadcast carries whole seconds)."""
        assert isinstance(self.reader, Dlt645Reader)
        now = time.time()
        at = float(int(now + self._wire_s) + 1)
        await asyncio.sleep(max(0.0, at - self._wire_s - time.time()))
        when = utc_ms_to_meter_time(int(at * 1000), tz)
        await self.reader.session.broadcast_time(when)
        return when
