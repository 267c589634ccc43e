"""Every shipped Modbus profile, end to end: ``metersim serve modbus --profile NAME``
serves it, the gateway's own reading path reads every register, and each value is
what the simulator's meter physics says at that instant, within the register's
resolution.

The profiles are found on disk, so a new profile file is tested without touching
this module.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from drivers.modbus import ModbusSession
from gateway.config import parse_config
from gateway.southbound.modbus.reader import ModbusReader
from gateway.southbound.reader import ReadResult
from protocols.modbus_profile import (
    BUILTIN_PROFILE_DIR,
    ModbusProfile,
    RegisterSpec,
    RegisterType,
    load_profile,
)
from protocols.quantities import QUANTITIES
from simulator.cli import build_parser, scenario_from_args
from simulator.meter.meter import SimMeter
from simulator.scenario.runner import Scenario

PROFILES = sorted(BUILTIN_PROFILE_DIR.glob("*.toml"))
START = "2026-11-23T02:00:00+00:00"  # 10:00 in Shanghai: the load is well above zero
UNIT = 7


def test_the_library_has_at_least_fifteen_profiles() -> None:
    assert len(PROFILES) >= 15


def tolerance(spec: RegisterSpec, expected: Decimal) -> Decimal:
    """How far a value read through ``spec`` may be from the physics' value.

    Integers are rounded to the raw step (half a step either way); floats carry
    24 (float32) or 53 (float64) significant bits of the raw value.
    """
    if spec.type is RegisterType.FLOAT32:
        return abs(expected) * Decimal(2) ** -23
    if spec.type is RegisterType.FLOAT64:
        return abs(expected) * Decimal(2) ** -52
    return abs(spec.scale) / 2


def meter_config(port: int, profile: Path, keys: tuple[str, ...]) -> str:
    quantities = ", ".join(f'"{k}"' for k in keys)
    return f"""
[poll_groups.all]
interval = "10s"
quantities = [{quantities}]

[[buses]]
name = "lib"
protocol = "modbus-tcp"
tcp = {{ host = "127.0.0.1", port = {port} }}

[[buses.meters]]
unit = {UNIT}
profile = "{profile}"
poll = ["all"]
"""


async def read_all(port: int, path: Path, profile: ModbusProfile) -> ReadResult:
    """One poll of every register of the profile, as the scheduler reads a meter."""
    cfg = parse_config(meter_config(port, path, profile.keys))
    meter = cfg.buses[0].meters[0]
    reader = ModbusReader(ModbusSession.tcp("127.0.0.1", port, timeout=2.0, retries=0))
    await reader.open()
    try:
        reader.check_keys(meter, profile.keys)
        return await reader.read(meter, profile.keys)
    finally:
        await reader.close()


def check_against_physics(profile: ModbusProfile, result: ReadResult, meter: SimMeter) -> None:
    assert result.errors == ()
    samples = {s.key: s for s in result.samples}
    assert sorted(samples) == sorted(profile.keys), "every register of the profile was read"
    physics = meter.values()
    for spec in profile.registers:
        expected = physics[spec.key]
        got = samples[spec.key]
        where = f"{profile.name}: {spec.key} at {spec.function:02d}:{spec.address}"
        assert got.unit == QUANTITIES[spec.key].unit, where
        assert abs(got.value - expected) <= tolerance(spec, expected), (
            f"{where}: read {got.value}, physics says {expected}"
        )


@pytest.mark.asyncio
@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
async def test_profile_served_by_metersim_reads_back_the_meter_physics(path: Path) -> None:
    profile = load_profile(path)
    args = build_parser().parse_args(
        ["serve", "modbus", "--tcp", "127.0.0.1:0", "--profile", profile.name,
         "--unit", str(UNIT), "--speed", "0", "--start", START]
    )  # fmt: skip
    scenario = Scenario(scenario_from_args(args))
    try:
        endpoints = await scenario.start()
        port = int(endpoints[0].where.rsplit(":", 1)[1])
        server = scenario.modbus["modbus"]
        assert server.profile.name == profile.name
        meter = server.units[UNIT]
        values = meter.values()
        # The physics gives the quantities a grid meter shows at 10:00.
        assert Decimal(200) < values["voltage_l1_v"] < Decimal(260)
        assert Decimal(49) < values["frequency_hz"] < Decimal(51)
        assert values["current_l1_a"] > 0

        check_against_physics(profile, await read_all(port, path, profile), meter)

        # An hour later the energy registers have risen with the power drawn.
        before = values["energy_import_total_kwh"]
        scenario.clock.advance(timedelta(hours=1))
        check_against_physics(profile, await read_all(port, path, profile), meter)
        assert meter.values()["energy_import_total_kwh"] > before
    finally:
        await scenario.stop()
