"""The Modbus meter reader the bus task drives: profile files say what to read.

Neighbouring registers are merged into one read (``max_gap``,
``max_registers``). See :mod:`gateway.southbound.reader` for the interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from drivers.errors import DeviceError, DriverError, LinkError, Timeout
from drivers.modbus import ModbusSession, RegisterSpan

# The reader's methods name their meter ``MeterConfig``, as the generic interface does:
# here that is the Modbus meter model (``unit`` and ``profile``).
from gateway.southbound.modbus.config import ModbusMeter as MeterConfig
from gateway.southbound.reader import MeterReaderOf, ReadResult, Sample
from protocols.modbus_profile import ModbusProfile, decode_value, resolve_profile


class ModbusReader(MeterReaderOf[MeterConfig]):
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
