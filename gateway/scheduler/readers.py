"""Protocol-specific meter readers the bus task drives: what to ask, how to decode.

A reader owns its bus's session and raises :mod:`drivers.errors`. A read that
got an answer returns samples plus per-item errors (a meter that refuses one
data identifier is still alive); a read without any answer raises.
"""

from __future__ import annotations

import abc
import contextlib
import datetime
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from drivers.dlt645 import Dlt645Session
from drivers.dlt645.plan import UnmappedKeys, plan_dis
from drivers.errors import DeviceError, DriverError, FrameError, LinkError, Timeout
from drivers.modbus import ModbusSession, RegisterSpan
from gateway.config.southbound import MeterConfig
from gateway.health import Gap, freezes_to_scan, meter_time_to_utc_ms, utc_ms_to_meter_time
from protocols.dlt645 import (
    FULL_LOAD_RECORD_SIZE,
    LOAD_PROFILE_DI,
    Variant,
    decode_load_profile,
    format_di,
    freeze_energy_di,
    freeze_time_di,
    load_profile_request_extra,
)
from protocols.modbus_profile import ModbusProfile, decode_value, resolve_profile
from protocols.quantities import QUANTITIES


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


class MeterReader(abc.ABC):
    """Reads meters of one protocol on one bus."""

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
    async def read(
        self, meter: MeterConfig, keys: Sequence[str], *, probe: bool = False
    ) -> ReadResult:
        """Read ``keys`` from ``meter``; raise when the meter did not answer at all.

        ``probe``: the meter is presumed dead; ask once, without retries.
        """

    async def read_clock(self, meter: MeterConfig) -> datetime.datetime | None:
        """The meter's clock as naive local time, or ``None`` if the protocol has none."""
        return None

    @abc.abstractmethod
    def check_keys(self, meter: MeterConfig, keys: Sequence[str]) -> None:
        """Raise :class:`ValueError` naming the keys ``meter`` cannot be read for."""

    def records(self, meter: MeterConfig, gap: Gap, tz: str) -> AsyncGenerator[RecordSlice, None]:
        """Meter-stamped records inside ``gap`` (in meter time: frozen registers, load
        profile), one slice of at most a couple of transactions per step, so that the
        bus task can poll other meters between steps. A slice may be empty."""
        return _nothing()

    def record_interval_s(self, meter: MeterConfig) -> int | None:
        """The interval of the records ``meter`` may keep (its load profile's), or ``None``
        when it keeps no interval records at all (a gap in its data cannot be filled)."""
        return None


# Records asked for per request: as many full (six-block, 103-byte) records as one reply
# frame's 200 data bytes hold after the DI, so a reply needs no follow-up frame: one.
_PROFILE_BATCH = max(1, (200 - 4) // FULL_LOAD_RECORD_SIZE)
_CLOCK_DIS = {Variant.V2007: (0x04000101, 0x04000102), Variant.V1997: (0xC010, 0xC011)}


class Dlt645Reader(MeterReader):
    """DL/T 645 meters: block DIs where they cover several keys, clock, frozen records."""

    def __init__(self, session: Dlt645Session) -> None:
        self.session = session
        self.link = session.transport.link
        self._plans: dict[tuple[str, ...], list[int]] = {}

    async def open(self) -> None:
        await self.session.transport.open()

    async def close(self) -> None:
        await self.session.transport.close()

    def check_keys(self, meter: MeterConfig, keys: Sequence[str]) -> None:
        try:
            self.plan(keys)
        except UnmappedKeys as exc:
            raise ValueError(f"meter {meter.meter_id}: {exc}") from None

    def plan(self, keys: Sequence[str]) -> list[int]:
        """The DIs read for ``keys`` (cached per key set)."""
        t = tuple(keys)
        if t not in self._plans:
            self._plans[t] = plan_dis(t, self.session.variant)
        return self._plans[t]

    async def read(
        self, meter: MeterConfig, keys: Sequence[str], *, probe: bool = False
    ) -> ReadResult:
        address = meter.address or ""
        wanted = set(keys)
        samples: list[Sample] = []
        errors: list[str] = []
        answered = False
        for di in self.plan(keys):
            try:
                retries = 0 if probe and not answered else None
                values = await self.session.read_values(address, di, retries=retries)
            except (Timeout, LinkError):
                if answered:
                    # The meter answered earlier in this poll: keep what we have.
                    errors.append(f"DI {format_di(di, self.session.variant)}: no reply")
                    continue
                raise
            except (DeviceError, FrameError) as exc:
                answered = True
                errors.append(str(exc))
                continue
            answered = True
            samples.extend(Sample(v.key, v.value, v.unit) for v in values if v.key in wanted)
        if not answered:
            raise FrameError(f"meter {address}: no usable reply")
        return ReadResult(tuple(samples), tuple(errors))

    async def read_clock(self, meter: MeterConfig) -> datetime.datetime | None:
        address = meter.address or ""
        date_di, time_di = _CLOCK_DIS[self.session.variant]
        day = await self.session.read_datetime(address, date_di)
        clock = await self.session.read_datetime(address, time_di)
        return datetime.datetime.combine(day.date(), clock.time())

    def record_interval_s(self, meter: MeterConfig) -> int | None:
        # DL/T 645-2007 meters keep a 15-minute load profile (or at least hourly
        # freezes); the 1997 edition has no record DIs this reader knows.
        return 900 if self.session.variant == Variant.V2007 else None

    async def records(
        self, meter: MeterConfig, gap: Gap, tz: str
    ) -> AsyncGenerator[RecordSlice, None]:
        """Daily freezes and load-profile records whose meter time falls in the gap;
        hourly freezes instead of the load profile on meters that keep none for it."""
        if self.session.variant != Variant.V2007:
            return
        have: set[tuple[str, int | None]] = set()
        async for daily in self._freezes(meter, gap, tz):
            have.update((s.key, s.ts_ms) for s in daily)
            yield RecordSlice("daily", daily)
        profile = False
        async for chunk in self._load_profile(meter, gap, tz):
            profile = profile or bool(chunk)
            yield RecordSlice("profile", chunk)
        if profile:
            return
        # Many meters have no load profile configured, but every DL/T 645-2007 meter
        # freezes its import total at each full hour. The midnight one repeats the
        # daily freeze's total: read once, stored once.
        async for hourly in self._freezes(meter, gap, tz, hourly=True):
            yield RecordSlice("hourly", [s for s in hourly if (s.key, s.ts_ms) not in have])

    async def _freezes(
        self, meter: MeterConfig, gap: Gap, tz: str, hourly: bool = False
    ) -> AsyncGenerator[list[Sample], None]:
        """Frozen records newest first, back to the gap's start, one per step: its time,
        then its energy (a meter without power freezes nothing, so times are read)."""
        address = meter.address or ""
        n, limit = 0, 1
        while n < limit:
            n += 1
            try:
                when = await self.session.read_datetime(address, freeze_time_di(n, hourly))
            except DeviceError:
                return  # no such record: the meter keeps fewer freezes
            ts_ms = meter_time_to_utc_ms(when, tz)
            if n == 1:
                # Counted from the newest freeze, not the gap's end: a resumed backfill's
                # gap may end long before now.
                limit = freezes_to_scan(
                    Gap(gap.meter_id, gap.start_ms, max(ts_ms, gap.end_ms)), hourly
                )
            if ts_ms <= gap.start_ms:
                return
            if not gap.contains(ts_ms):
                yield []
                continue
            values = await self.session.read_values(address, freeze_energy_di(n, hourly))
            if not hourly:
                # The export registers of the same freeze, where the meter keeps them.
                with contextlib.suppress(DeviceError):
                    values += await self.session.read_values(
                        address, freeze_energy_di(n, export=True)
                    )
            yield [Sample(v.key, v.value, v.unit, ts_ms) for v in values]

    async def _load_profile(
        self, meter: MeterConfig, gap: Gap, tz: str
    ) -> AsyncGenerator[list[Sample], None]:
        """Load-profile records from the gap's start, ``_PROFILE_BATCH`` records per step,
        until the gap is covered or the meter has no newer record: every measured field
        with a quantity key becomes a sample (not-measured FFH fields are not values)."""
        address = meter.address or ""
        start = utc_ms_to_meter_time(gap.start_ms, tz).replace(second=0, microsecond=0)
        while True:
            extra = load_profile_request_extra(_PROFILE_BATCH, start)
            try:
                payload = await self.session.read(
                    address, LOAD_PROFILE_DI, extra=extra, long_reply=True
                )
            except DeviceError:
                return  # no records (or no load profile on this meter)
            try:
                records = decode_load_profile(payload)
            except ValueError as exc:
                raise FrameError(f"meter {address}: load profile: {exc}") from exc
            # Only records from the start asked for count: a meter that answers with a
            # record already read (or an older one) has nothing newer, and each request
            # starts strictly later than the one before, so this loop ends.
            fresh = [rec for rec in records if rec.start >= start]
            out: list[Sample] = []
            for rec in fresh:
                ts_ms = meter_time_to_utc_ms(rec.start, tz)
                if rec.valid and gap.contains(ts_ms):
                    for key, value in rec.values.items():
                        if key in QUANTITIES:  # quadrant energies and demand have no key
                            out.append(Sample(key, value, QUANTITIES[key].unit, ts_ms))
            yield out
            if not fresh or len(records) < _PROFILE_BATCH:
                return
            start = max(rec.start for rec in fresh) + datetime.timedelta(minutes=1)
            if meter_time_to_utc_ms(start, tz) > gap.end_ms:
                return


class ModbusReader(MeterReader):
    """Modbus meters described by profile files; neighbouring registers merged."""

    def __init__(self, session: ModbusSession, profile_dirs: Sequence[Path] = ()) -> None:
        self.session = session
        self.link = session.link
        self.profile_dirs = tuple(profile_dirs)
        self._profiles: dict[str, ModbusProfile] = {}

    def profile(self, name: str) -> ModbusProfile:
        """A profile by name or path, loaded once."""
        if name not in self._profiles:
            self._profiles[name] = resolve_profile(name, self.profile_dirs)
        return self._profiles[name]

    def check_keys(self, meter: MeterConfig, keys: Sequence[str]) -> None:
        profile = self.profile(meter.profile or "")
        missing = [k for k in keys if k not in profile.keys]
        if missing:
            raise ValueError(
                f"meter {meter.meter_id}: profile {profile.name!r} has no {', '.join(missing)}"
            )

    async def open(self) -> None:
        await self.session.open()

    async def close(self) -> None:
        await self.session.close()

    async def read(
        self, meter: MeterConfig, keys: Sequence[str], *, probe: bool = False
    ) -> ReadResult:
        profile = self.profile(meter.profile or "")
        specs = {k: profile.by_key(k) for k in dict.fromkeys(keys)}
        spans = [RegisterSpan(s.key, s.function, s.address, s.count) for s in specs.values()]
        samples: list[Sample] = []
        errors: list[str] = []
        answered = False
        unit = meter.unit if meter.unit is not None else 1
        for block in self.session.plan(spans):
            try:
                registers = await self.session.read_block(unit, block)
            except (Timeout, LinkError):
                if answered:
                    errors.append(f"unit {unit}: no reply at {block.address}")
                    continue
                raise
            except DeviceError as exc:
                answered = True
                errors.append(str(exc))
                continue
            answered = True
            for span in block.spans:
                spec = specs[span.key]
                try:
                    value = decode_value(spec, block.registers_of(span, registers))
                except ValueError as exc:
                    errors.append(f"unit {unit}: {exc}")
                    continue
                samples.append(Sample(spec.key, value, spec.unit))
        if not answered:
            raise DriverError(f"unit {unit} on {self.link}: no usable reply")
        return ReadResult(tuple(samples), tuple(errors))
