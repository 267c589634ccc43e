"""Modbus meters read with pymodbus's own client, over TCP and RTU on a pty."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from protocols.modbus_profile import decode_value, parse_profile, resolve_profile
from simulator import ModbusServer, SimClock, SimMeter

SDM630 = resolve_profile("sdm630")


def decode_all(registers: Sequence[int], base: int = 0) -> dict[str, Decimal]:
    return {
        s.key: decode_value(s, registers[s.address - base : s.end - base])
        for s in SDM630.registers
        if s.address >= base and s.end - base <= len(registers)
    }


@pytest.mark.asyncio
async def test_sdm630_over_tcp_is_consistent_with_physics(clock: SimClock) -> None:
    meters = {1: SimMeter("mb-1", 1, clock), 2: SimMeter("mb-2", 2, clock)}
    async with ModbusServer("sdm630", meters) as server:
        port = await server.start_tcp("127.0.0.1", 0)
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2)
        await client.connect()
        for unit in (1, 2):
            # One merged read covers every SDM630 register (gaps read as 0).
            rr = await client.read_input_registers(0, count=0x4C, device_id=unit)
            assert not rr.isError()
            v = decode_all(rr.registers)
            for p in (1, 2, 3):
                u, i = v[f"voltage_l{p}_v"], v[f"current_l{p}_a"]
                pf, kw = v[f"power_factor_l{p}"], v[f"power_active_l{p}_kw"]
                # float32 carries ~7 digits: agree to 0.1 %.
                assert abs(u * i * pf / 1000 - kw) <= kw * Decimal("0.001") + Decimal("0.0001")
            total = sum(v[f"power_active_l{p}_kw"] for p in (1, 2, 3))
            assert abs(v["power_active_total_kw"] - total) < Decimal("0.001")
            assert abs(v["frequency_hz"] - 50) < Decimal("0.1")
            served = meters[unit].last_served[0x0048][0]
            assert abs(v["energy_import_total_kwh"] - served) <= served * Decimal("1e-7")
        assert server.request_counts == {1: 1, 2: 1}
        # Two small reads count as two requests: the gateway's merging is measurable.
        await client.read_input_registers(0x0000, count=2, device_id=1)
        await client.read_input_registers(0x0048, count=2, device_id=1)
        assert server.request_count == 4
        client.close()


@pytest.mark.asyncio
async def test_unknown_unit_and_no_answer_get_silence(clock: SimClock) -> None:
    meter = SimMeter("mb-1", 1, clock)
    async with ModbusServer("sdm630", {1: meter}) as server:
        port = await server.start_tcp("127.0.0.1", 0)
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.3, retries=0)
        await client.connect()
        with pytest.raises(ModbusIOException):
            await client.read_input_registers(0, count=2, device_id=9)
        meter.set_fault("no_answer")
        client2 = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.3, retries=0)
        await client2.connect()
        with pytest.raises(ModbusIOException):
            await client2.read_input_registers(0, count=2, device_id=1)
        assert server.request_counts[1] == 1  # it was received, just not answered
        client.close()
        client2.close()


@pytest.mark.asyncio
async def test_rtu_over_pty_and_bad_checksum(clock: SimClock) -> None:
    meter = SimMeter("mb-1", 1, clock)
    async with ModbusServer("sdm630", {7: meter}) as server:
        path = await server.start_pty()
        client = AsyncModbusSerialClient(path, baudrate=9600, timeout=0.5, retries=0)
        await client.connect()
        rr = await client.read_input_registers(0x0048, count=2, device_id=7)
        assert not rr.isError()
        energy = decode_value(SDM630.by_key("energy_import_total_kwh"), rr.registers)
        assert abs(energy - meter.last_served[0x0048][0]) <= energy * Decimal("1e-7")
        meter.set_fault("bad_checksum")
        with pytest.raises(ModbusIOException):
            await client.read_input_registers(0x0048, count=2, device_id=7)
        client.close()
        assert server.request_counts[7] == 2


def test_a_profile_mapping_a_quantity_the_meter_lacks_is_refused(clock: SimClock) -> None:
    profile = parse_profile(
        '[profile]\nname = "demand"\nfunction = 3\ntype = "float32"\n'
        '[[registers]]\nkey = "voltage_l1_v"\naddress = 0\n'
        '[[registers]]\nkey = "demand_active_import_max_kw"\naddress = 2\n',
        "demand.toml",
    )
    with pytest.raises(ValueError, match=r"mb: profile 'demand' maps .*: demand_active_import_max"):
        ModbusServer(profile, {1: SimMeter("mb-1", 1, clock)}, name="mb")
