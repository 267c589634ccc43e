"""Modbus buses under the scheduler (merged requests counted at the server) and config checks."""

from __future__ import annotations

import tomllib

import pytest

from drivers.modbus import RegisterSpan, plan_reads
from gateway.config import Config, ConfigError, parse_config
from gateway.config.southbound import southbound_problems
from gateway.metrics import Metrics
from gateway.scheduler import Scheduler
from protocols.modbus_profile import decode_value, encode_value, resolve_profile
from simulator import ModbusServer, SimClock, SimMeter
from tests.gateway.scheduler.conftest import MemoryAcceptor, running, until

SDM630 = resolve_profile("sdm630")
KEYS = ["voltage_l1_v", "voltage_l2_v", "voltage_l3_v", "current_l1_a", "frequency_hz",
        "energy_import_total_kwh"]  # fmt: skip


def modbus_config(port: int, units: list[int], profile: str = "sdm630") -> str:
    meters = "\n".join(
        f'[[buses.meters]]\nunit = {u}\nprofile = "{profile}"\npoll = ["fast"]\n' for u in units
    )
    return f"""
[poll_groups.fast]
interval = "1s"
quantities = {KEYS!r}

[[buses]]
name = "mb-1"
protocol = "modbus-tcp"
tcp = {{ host = "127.0.0.1", port = {port} }}
timeout = 0.3
max_gap = 10

{meters}
""".replace("'", '"')


@pytest.mark.asyncio
async def test_modbus_polls_use_merged_requests_and_exact_values() -> None:
    clock = SimClock(speed=0)
    meters = {1: SimMeter("1", seed=1, clock=clock), 2: SimMeter("2", seed=2, clock=clock)}
    async with ModbusServer("sdm630", meters) as srv:
        port = await srv.start_tcp("127.0.0.1", 0)
        acc = MemoryAcceptor()
        cfg = parse_config(modbus_config(port, [1, 2]))
        async with running(cfg, acc):
            await until(
                lambda: all(len(acc.of(f"unit-{u}")) >= 2 * len(KEYS) for u in meters), 5, "polls"
            )
        counts = dict(srv.request_counts)
    spans = [RegisterSpan(k, 4, SDM630.by_key(k).address, 2) for k in KEYS]
    per_poll = len(plan_reads(spans, max_gap=10))
    assert per_poll < len(KEYS)
    for unit, meter in meters.items():
        polls = len({r.ts_ms for r in acc.of(f"unit-{unit}")})
        assert counts[unit] == polls * per_poll
        for key in KEYS:
            spec = SDM630.by_key(key)
            wire = decode_value(spec, encode_value(spec, meter.value(key)))
            assert {r.value for r in acc.of(f"unit-{unit}", key)} == {wire}


def test_meter_quantities_are_checked_against_protocol_and_profile() -> None:
    text = """
[poll_groups.grid]
interval = "10s"
quantities = ["frequency_hz", "voltage_l1_v"]

[[buses]]
name = "old"
protocol = "dlt645-1997"
serial = { port = "/dev/ttyUSB0", baud = 1200 }
[[buses.meters]]
address = "000000000001"
poll = ["grid"]

[[buses]]
name = "mb"
protocol = "modbus-tcp"
tcp = { host = "127.0.0.1", port = 502 }
[[buses.meters]]
unit = 1
profile = "sdm630"
poll = ["grid"]
[[buses.meters]]
unit = 2
profile = "no-such-profile"
poll = ["grid"]
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="box.toml")
    assert [str(p) for p in info.value.problems][:1] == [
        "box.toml: buses[0].meters[0].poll: no dlt645-1997 data identifier for frequency_hz"
    ]
    cfg = Config.model_validate(tomllib.loads(text))  # what the schema alone lets through
    problems = southbound_problems(cfg.poll_groups, cfg.buses)
    assert problems[0] == (
        "buses[0].meters[0].poll: no dlt645-1997 data identifier for frequency_hz"
    )
    assert problems[1].startswith("buses[1].meters[1].profile: profile 'no-such-profile' not found")
    assert len(problems) == 2  # sdm630 covers both quantities
    with pytest.raises(ValueError, match=r"buses\[0\]\.meters\[0\]\.poll"):
        Scheduler(cfg, MemoryAcceptor(), Metrics())


def test_unknown_quantity_keys_in_a_poll_group_are_errors() -> None:
    text = '[poll_groups.x]\ninterval = "1s"\nquantities = ["voltage_l1_v", "volts"]\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="box.toml")
    assert [str(p) for p in info.value.problems] == [
        "box.toml: poll_groups.x.quantities: unknown quantity key(s): 'volts'"
    ]


def test_serial_line_settings_default_by_protocol() -> None:
    text = """
[[buses]]
name = "mb"
protocol = "modbus-rtu"
serial = { port = "/dev/ttyUSB0" }
[[buses]]
name = "old"
protocol = "dlt645-1997"
serial = { port = "/dev/ttyUSB1" }
[[buses]]
name = "new"
protocol = "dlt645-2007"
serial = { port = "/dev/ttyUSB2", parity = "N" }
"""
    lines = [b.serial for b in parse_config(text).buses]
    assert [(s.baud, s.parity) for s in lines if s is not None] == [
        (9600, "N"),
        (1200, "E"),
        (2400, "N"),
    ]
