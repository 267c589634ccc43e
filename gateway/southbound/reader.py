"""What the bus task asks of a protocol: the meter reader interface and its values.

A reader owns its bus's session and raises :mod:`drivers.errors`. A read that
got an answer returns samples plus per-item errors (a meter that refuses one
data identifier is still alive); a read without any answer raises. Each
protocol's plugin (:mod:`gateway.southbound.registry`) builds its reader.
"""

from __future__ import annotations

import abc
import datetime
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from gateway.config.southbound import MeterConfig
from gateway.health import Gap

M = TypeVar("M", bound=MeterConfig)
"""A protocol's meter model."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One value read from a meter, before it becomes a :class:`Reading`."""

    key: str
    value: Decimal
    unit: str
    ts_ms: int | None = None
    """Meter-stamped time (ms UTC) for records; ``None`` for live values."""


@dataclass(frozen=True, slots=True)
class ReadResult:
    """What one poll of one meter produced."""

    samples: tuple[Sample, ...]
    errors: tuple[str, ...] = ()
    """Items the meter answered with an error or unusable data."""


@dataclass(frozen=True, slots=True)
class RecordSlice:
    """Records read in one step of a backfill, and where they came from: ``daily``
    and ``hourly`` freezes (read newest first), or the ``profile`` (oldest first)."""

    kind: str
    samples: list[Sample]


async def _nothing() -> AsyncGenerator[RecordSlice, None]:
    return
    yield RecordSlice("", [])  # an async generator that yields nothing


class MeterReaderOf(abc.ABC, Generic[M]):
    """Reads meters of one protocol on one bus (``M``: its protocol's meter model).

    A protocol's plugin makes one per bus (``open_reader``); the bus task
    drives it. Optional abilities have defaults that say "not here": no clock,
    no records, no broadcast time."""

    link: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Open the link (raise :class:`LinkError`)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the link."""

    async def reopen(self) -> None:
        """Close and open the link again."""
        await self.close()
        await self.open()

    @abc.abstractmethod
    async def read(self, meter: M, keys: Sequence[str], *, probe: bool = False) -> ReadResult:
        """Read ``keys`` from ``meter``; raise when the meter did not answer at all.

        ``probe``: the meter is presumed dead; ask once, without retries.
        """

    async def read_clock(self, meter: M) -> datetime.datetime | None:
        """The meter's clock as naive local time, or ``None`` if the protocol has none."""
        return None

    @abc.abstractmethod
    def check_keys(self, meter: M, keys: Sequence[str]) -> None:
        """Raise :class:`ValueError` naming the keys ``meter`` cannot be read for."""

    def records(self, meter: M, gap: Gap, tz: str) -> AsyncGenerator[RecordSlice, None]:
        """Meter-stamped records inside ``gap`` (in meter time: frozen registers, load
        profile), one slice of at most a couple of transactions per step, so that the
        bus task can poll other meters between steps. A slice may be empty."""
        return _nothing()

    def record_interval_s(self, meter: M) -> int | None:
        """The interval of the records ``meter`` may keep (its load profile's), or ``None``
        when it keeps no interval records at all (a gap in its data cannot be filled)."""
        return None

    async def broadcast_time(self, tz: str) -> datetime.datetime:
        """Set the clock of every meter on the line at once, to the gateway's time in
        time zone ``tz`` (no reply); the meter-local time sent. Only protocols whose bus
        model has a ``time_sync`` table are asked."""
        raise NotImplementedError(f"{type(self).__name__}: no broadcast time")


MeterReader = MeterReaderOf[Any]
"""A reader of any protocol, as the bus task holds it."""
