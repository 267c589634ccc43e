"""Modbus master session over pymodbus 3.16 async clients.

RTU over a serial line, Modbus TCP, and RTU framing over TCP (serial servers).
pymodbus reports failures as exceptions of its own and error PDUs; here they
become :mod:`drivers.errors`: no reply -> :class:`Timeout`, exception response
-> :class:`DeviceError` with the exception code, lost link -> :class:`LinkError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.errors import DeviceError, FrameError, LinkError, Timeout
from drivers.modbus.planner import MAX_REGISTERS, ReadBlock, RegisterSpan, plan_reads

_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusSession:
    """Reads registers from Modbus devices on one link, one request at a time."""

    def __init__(
        self,
        client: AsyncModbusTcpClient | AsyncModbusSerialClient,
        link: str,
        *,
        max_gap: int = 10,
        max_registers: int = MAX_REGISTERS,
    ) -> None:
        self.client = client
        self.link = link
        self.max_gap = max_gap
        self.max_registers = max_registers
        self.requests = 0
        """Read requests sent (each merged block counts once)."""

    @classmethod
    def tcp(
        cls,
        host: str,
        port: int,
        *,
        rtu_framing: bool = False,
        timeout: float = 1.0,
        retries: int = 1,
        max_gap: int = 10,
        max_registers: int = MAX_REGISTERS,
    ) -> ModbusSession:
        """Modbus TCP, or RTU frames over TCP (``rtu_framing``) for serial servers."""
        client = AsyncModbusTcpClient(
            host,
            port=port,
            framer=FramerType.RTU if rtu_framing else FramerType.SOCKET,
            timeout=timeout,
            retries=retries,
            reconnect_delay=0,
        )
        return cls(client, f"{host}:{port}", max_gap=max_gap, max_registers=max_registers)

    @classmethod
    def serial(
        cls,
        port: str,
        *,
        baud: int = 9600,
        parity: str = "N",
        bytesize: int = 8,
        stopbits: int = 1,
        timeout: float = 1.0,
        retries: int = 1,
        max_gap: int = 10,
        max_registers: int = MAX_REGISTERS,
    ) -> ModbusSession:
        """Modbus RTU on a serial line (default 9600 8N1)."""
        client = AsyncModbusSerialClient(
            port,
            baudrate=baud,
            parity=parity,
            bytesize=bytesize,
            stopbits=stopbits,
            timeout=timeout,
            retries=retries,
            reconnect_delay=0,
        )
        return cls(client, port, max_gap=max_gap, max_registers=max_registers)

    async def open(self) -> None:
        """Connect if not connected; raise :class:`LinkError` naming the link."""
        if self.client.connected:
            return
        try:
            ok = await self.client.connect()
        except (OSError, ModbusException) as exc:
            raise LinkError(f"{self.link}: cannot connect: {exc}", self.link) from exc
        if not ok:
            raise LinkError(f"{self.link}: cannot connect", self.link)

    async def close(self) -> None:
        """Close the connection; the next read connects again."""
        self.client.close()

    async def read_block(self, unit: int, block: ReadBlock) -> list[int]:
        """The registers (or bits as 0/1) of one block from device ``unit``."""
        await self.open()
        c = self.client
        what = f"unit {unit} on {self.link}: FC {block.function:02d} @{block.address}+{block.count}"
        self.requests += 1
        try:
            if block.function == 3:
                resp = await c.read_holding_registers(
                    block.address, count=block.count, device_id=unit
                )
            elif block.function == 4:
                resp = await c.read_input_registers(
                    block.address, count=block.count, device_id=unit
                )
            elif block.function == 1:
                resp = await c.read_coils(block.address, count=block.count, device_id=unit)
            elif block.function == 2:
                resp = await c.read_discrete_inputs(
                    block.address, count=block.count, device_id=unit
                )
            else:
                raise FrameError(f"{what}: unsupported function code")
        except ConnectionException as exc:
            raise LinkError(f"{self.link}: {exc}", self.link) from exc
        except ModbusIOException as exc:
            raise Timeout(f"{what}: no reply") from exc
        except ModbusException as exc:
            raise FrameError(f"{what}: {exc}") from exc
        if resp.isError():
            code = int(getattr(resp, "exception_code", 0))
            name = _EXCEPTIONS.get(code, "unknown exception")
            raise DeviceError(f"{what}: Modbus exception {code} ({name})", code)
        if block.function in (1, 2):
            return [int(b) for b in resp.bits[: block.count]]
        if len(resp.registers) < block.count:
            raise FrameError(f"{what}: reply holds {len(resp.registers)} registers")
        return list(resp.registers)

    def plan(self, spans: Sequence[RegisterSpan]) -> list[ReadBlock]:
        """The merged requests for ``spans`` under this session's limits."""
        return plan_reads(spans, max_gap=self.max_gap, max_registers=self.max_registers)

    async def read_spans(self, unit: int, spans: Sequence[RegisterSpan]) -> dict[str, list[int]]:
        """Registers of each span by key, read with as few requests as the plan allows."""
        out: dict[str, list[int]] = {}
        for block in self.plan(spans):
            registers = await self.read_block(unit, block)
            for span in block.spans:
                out[span.key] = block.registers_of(span, registers)
        return out
