"""Modbus session against the simulator's server: merged requests, exact values, errors."""

from __future__ import annotations

import asyncio
import shutil
from decimal import Decimal

import pytest

from drivers.errors import DeviceError, LinkError, Timeout
from drivers.modbus import ModbusSession, ReadBlock, RegisterSpan
from protocols.modbus_profile import decode_value, encode_value, resolve_profile
from simulator import ModbusServer, SimClock, SimMeter
from tests.servers import free_port

SDM630 = resolve_profile("sdm630")


def spans() -> list[RegisterSpan]:
    return [RegisterSpan(s.key, s.function, s.address, s.count) for s in SDM630.registers]


def served(meter: SimMeter) -> dict[str, Decimal]:
    """What the wire carried: the served value through the profile's float32."""
    out = {}
    for s in SDM630.registers:
        if s.address in meter.last_served:
            out[s.key] = decode_value(s, encode_value(s, meter.last_served[s.address][0]))
    return out


@pytest.mark.asyncio
async def test_merged_reads_count_requests_and_values_match() -> None:
    meter = SimMeter("1", seed=3, protocol="modbus")
    async with ModbusServer("sdm630", {1: meter}) as srv:
        port = await srv.start_tcp("127.0.0.1", 0)
        session = ModbusSession.tcp("127.0.0.1", port, timeout=1.0, max_gap=10)
        try:
            plan = session.plan(spans())
            registers = await session.read_spans(1, spans())
            assert srv.request_count == len(plan) == session.requests
            assert len(plan) < len(SDM630.registers) // 2
            values = {s.key: decode_value(s, registers[s.key]) for s in SDM630.registers}
            assert values == served(meter)
            # Unmerged, the same read costs one request per value.
            unmerged = ModbusSession.tcp("127.0.0.1", port, max_gap=0, max_registers=2)
            before = srv.request_count
            await unmerged.read_spans(1, spans())
            assert srv.request_count - before == len(SDM630.registers)
            await unmerged.close()
        finally:
            await session.close()


@pytest.mark.asyncio
async def test_rtu_over_a_pty_line() -> None:
    meter = SimMeter("2", seed=4, protocol="modbus")
    async with ModbusServer("sdm630", {7: meter}) as srv:
        path = await srv.start_pty()
        session = ModbusSession.serial(path, baud=9600, timeout=1.0)
        try:
            regs = await session.read_spans(7, spans()[:3])
            got = {k: decode_value(SDM630.by_key(k), v) for k, v in regs.items()}
            assert got == {k: v for k, v in served(meter).items() if k in got}
            assert len(got) == 3
        finally:
            await session.close()


@pytest.mark.asyncio
async def test_exception_reply_is_a_device_error_with_its_code() -> None:
    meter = SimMeter("3", seed=5, protocol="modbus")
    async with ModbusServer("sdm630", {1: meter}) as srv:
        port = await srv.start_tcp("127.0.0.1", 0)
        session = ModbusSession.tcp("127.0.0.1", port, timeout=0.5)
        try:
            with pytest.raises(DeviceError) as info:
                await session.read_block(1, ReadBlock(4, 0x3000, 2, ()))
            assert info.value.code == 2  # illegal data address
            meter.set_fault("no_answer")
            with pytest.raises(Timeout, match="unit 1"):
                await session.read_block(1, ReadBlock(4, 0, 2, ()))
        finally:
            await session.close()


@pytest.mark.asyncio
async def test_refused_connection_is_a_link_error_naming_the_endpoint() -> None:
    port = free_port()
    session = ModbusSession.tcp("127.0.0.1", port, timeout=0.3)
    with pytest.raises(LinkError, match=f"127.0.0.1:{port}"):
        await session.read_block(1, ReadBlock(4, 0, 2, ()))


@pytest.mark.asyncio
@pytest.mark.skipif(
    shutil.which("socat") is None, reason="socat is not installed (make test installs it as root)"
)
async def test_rtu_framing_over_tcp_through_a_serial_server() -> None:
    """A transparent serial server (socat: TCP <-> the RTU line) carries RTU frames."""
    meter = SimMeter("5", seed=6, clock=SimClock(speed=0))
    async with ModbusServer("sdm630", {3: meter}) as srv:
        path = await srv.start_pty()
        port = free_port()
        socat = await asyncio.create_subprocess_exec(
            "socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", f"FILE:{path},raw,echo=0",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        session = ModbusSession.tcp("127.0.0.1", port, rtu_framing=True, timeout=1.0)
        try:
            deadline = asyncio.get_running_loop().time() + 5
            while True:  # socat needs a moment to listen
                try:
                    await session.open()
                    break
                except LinkError:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.05)
            regs = await session.read_spans(3, spans()[:4])
            got = {k: decode_value(SDM630.by_key(k), v) for k, v in regs.items()}
            assert got == {k: v for k, v in served(meter).items() if k in got}
            assert len(got) == 4
        finally:
            await session.close()
            socat.terminate()
            await socat.wait()
