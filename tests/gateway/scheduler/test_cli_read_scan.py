"""``metergw read`` and ``metergw scan`` as a user runs them, against the simulator."""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from decimal import Decimal

import pytest

from protocols.modbus_profile import decode_value, encode_value, resolve_profile
from simulator import Dlt645Bus, ModbusServer, SimClock, SimMeter

A1, A3 = "000000000001", "000000000003"


async def metergw(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.asyncio
async def test_read_dlt645_json_table_and_timeout() -> None:
    clock = SimClock(speed=0)
    meters = [SimMeter(A1, seed=1, clock=clock), SimMeter(A3, seed=3, clock=clock)]
    async with Dlt645Bus(meters) as sim:
        path = await sim.start_pty()
        code, out, err = await metergw(
            "read", "--serial", path, "--addr", A3, "--di", "0001FF00", "--json", "--timeout", "0.5"
        )
        assert code == 0, err
        doc = json.loads(out)
        assert doc["meter"] == A3
        assert doc["link"] == path
        values = [Decimal(v["value"]) for v in doc["values"]]
        assert values == meters[1].last_served[0x0001FF00]
        assert doc["values"][0]["key"] == "energy_import_total_kwh"
        code, out, err = await metergw(
            "read", "--serial", path, "--addr", A1, "--di", "voltage_l1_v", "--di", "04000102"
        )
        assert code == 0, err
        assert "voltage_l1_v" in out
        assert str(meters[0].value("voltage_l1_v")) in out
        assert " V" in out
        assert "time" in out
        meters[0].set_fault("no_answer")
        code, out, err = await metergw(
            "read", "--serial", path, "--addr", A1, "--di", "00010000", "--timeout", "0.2"
        )
        assert code == 1
        assert out == ""
        assert A1 in err
        assert path in err
        assert "no reply" in err
        code, _, err = await metergw("read", "--serial", path, "--addr", A3, "--di", "0001FF")
        assert code == 2
        assert "0001FF" in err


@pytest.mark.asyncio
async def test_read_modbus_tcp_profile() -> None:
    meter = SimMeter("1", seed=5, clock=SimClock(speed=0))
    profile = resolve_profile("sdm630")
    async with ModbusServer("sdm630", {4: meter}) as srv:
        port = await srv.start_tcp("127.0.0.1", 0)
        code, out, err = await metergw(
            "read", "--protocol", "modbus-tcp", "--tcp", f"127.0.0.1:{port}",
            "--unit", "4", "--profile", "sdm630", "--json",
        )  # fmt: skip
        assert code == 0, err
        got = {v["key"]: Decimal(v["value"]) for v in json.loads(out)["values"]}
        assert got == {
            s.key: decode_value(s, encode_value(s, meter.value(s.key))) for s in profile.registers
        }
        assert srv.request_counts[4] < len(profile.registers)  # merged
        code, _, err = await metergw(
            "read", "--protocol", "modbus-tcp", "--tcp", f"127.0.0.1:{port}",
            "--unit", "9", "--profile", "sdm630", "--timeout", "0.3",
        )  # fmt: skip
        assert code == 1
        assert "unit 9" in err
        assert f"127.0.0.1:{port}" in err


@pytest.mark.asyncio
async def test_scan_finds_meters_and_prints_a_config_snippet() -> None:
    clock = SimClock(speed=0)
    async with Dlt645Bus([SimMeter(A3, seed=3, clock=clock)]) as one:
        path = await one.start_pty()
        code, out, err = await metergw("scan", "--serial", path)
        assert code == 0, err
        doc = tomllib.loads(out)
        assert doc["buses"][0]["serial"]["port"] == path
        assert [m["address"] for m in doc["buses"][0]["meters"]] == [A3]
    meters = [SimMeter(A1, seed=1, clock=clock), SimMeter(A3, seed=3, clock=clock)]
    async with Dlt645Bus(meters) as two:
        port = await two.start_tcp("127.0.0.1", 0)
        code, out, err = await metergw(
            "scan", "--tcp", f"127.0.0.1:{port}", "--addresses",
            "000000000001-000000000002,000000000003", "--timeout", "0.2",
        )  # fmt: skip
        assert code == 0, err
        doc = tomllib.loads(out)
        assert [m["address"] for m in doc["buses"][0]["meters"]] == [A1, A3]
        assert doc["buses"][0]["tcp"] == {"host": "127.0.0.1", "port": port}
        assert err == ""  # no progress bar off a TTY
    async with ModbusServer("sdm630", {2: SimMeter("2", clock=clock)}) as srv:
        port = await srv.start_tcp("127.0.0.1", 0)
        code, out, err = await metergw(
            "scan", "--protocol", "modbus-tcp", "--tcp", f"127.0.0.1:{port}",
            "--units", "1-3", "--profile", "sdm630", "--timeout", "0.2",
        )  # fmt: skip
        assert code == 0, err
        doc = tomllib.loads(out)
        assert doc["buses"][0]["meters"] == [{"unit": 2, "profile": "sdm630", "poll": []}]
        code, out, _ = await metergw(
            "scan", "--protocol", "modbus-tcp", "--tcp", f"127.0.0.1:{port}",
            "--units", "5", "--timeout", "0.2",
        )  # fmt: skip
        assert code == 1
        assert "0 unit(s) found" in out
