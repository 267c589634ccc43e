"""Modbus TCP and RTU meters: pymodbus's server, registers computed on read.

Each unit is a :class:`~simulator.meter.meter.SimMeter` seen through a
register-map profile (:mod:`protocols.modbus_profile`). The server uses
pymodbus's ``SimDevice``/``SimData`` datastore (the old sequential blocks are
deprecated and reject address 0): each function code's registers form one
contiguous block from the profile's first to last register (gaps read as 0,
as on real meters, so merged reads across small gaps work), and a device
action fills the requested range from the meter model at the moment of the
request.

Faults per unit (set on the meter): ``no_answer`` (reply dropped), ``slow``
(``delay`` seconds before the reply), ``bad_checksum`` (RTU: CRC flipped;
TCP: last byte flipped), ``wrong_address`` (reply carries ``unit`` or unit+1),
``garbage`` (bytes before the reply). Requests for units the server does not
have get no reply, as on a real bus. ``request_count`` counts every request
received; ``request_counts`` per unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from protocols.modbus_profile import ModbusProfile, RegisterSpec, encode_value, resolve_profile
from simulator.meter.meter import SimMeter
from simulator.transport.pty import PtyBridge


def _crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class ModbusServer:
    """One Modbus endpoint (TCP port or RTU line) serving several units.

    ``profile`` is a profile name or path (resolved with ``profile_dirs``
    first, then ``config/profiles``) or a loaded :class:`ModbusProfile`;
    ``units`` maps unit id -> meter.
    """

    def __init__(
        self,
        profile: str | ModbusProfile,
        units: Mapping[int, SimMeter],
        *,
        profile_dirs: tuple[str | Path, ...] = (),
        baud: int = 9600,
        name: str = "modbus",
    ) -> None:
        self.profile = (
            profile
            if isinstance(profile, ModbusProfile)
            else resolve_profile(profile, profile_dirs)
        )
        for unit, meter in units.items():
            if not 1 <= unit <= 247:
                raise ValueError(f"{name}: unit id {unit} is outside 1..247")
            missing = sorted(set(self.profile.keys) - set(meter.values()))
            if missing:
                raise ValueError(
                    f"{name}: profile {self.profile.name!r} maps quantities the simulated "
                    f"meter does not produce: {', '.join(missing)}"
                )
        self.units = dict(units)
        self.name = name
        self.baud = baud
        self.request_counts: Counter[int] = Counter()
        self.framer: FramerType = FramerType.SOCKET
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._bridge: PtyBridge | None = None
        self._rng = random.Random(0)
        self._by_fc: dict[int, list[RegisterSpec]] = {3: [], 4: []}
        for spec in self.profile.registers:
            self._by_fc[spec.function].append(spec)
        self.endpoint = ""

    @property
    def request_count(self) -> int:
        """Requests received so far, all units together."""
        return sum(self.request_counts.values())

    # --------------------------------------------------------------- datastore

    def _block(self, fc: int) -> list[SimData]:
        specs = self._by_fc[fc]
        if not specs:
            return [SimData(address=0, count=1, datatype=DataType.INVALID)]
        first = min(s.address for s in specs)
        end = max(s.end for s in specs)
        return [SimData(address=first, count=end - first, values=0, datatype=DataType.REGISTERS)]

    def _devices(self) -> list[SimDevice]:
        devices = []
        for unit in self.units:
            bits = [SimData(address=0, count=16, values=False, datatype=DataType.BITS)]
            devices.append(
                SimDevice(
                    id=unit,
                    simdata=(list(bits), list(bits), self._block(3), self._block(4)),
                    action=functools.partial(self._on_access, unit),
                )
            )
        return devices

    async def _on_access(
        self,
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a meter's measurements are read-only
        meter = self.units[unit]
        specs = self._by_fc.get(function_code, [])
        wanted = [s for s in specs if s.address < address + count and s.end > address]
        if wanted:
            values = meter.values()
            for spec in wanted:
                value = values[spec.key]
                words = encode_value(spec, value)
                offset = spec.address - start_address
                registers[offset : offset + len(words)] = words
                meter.last_served[spec.address] = [value]
        slow = meter.fault("slow")
        if slow is not None:
            await asyncio.sleep(float(slow.params.get("delay", 1.0)))
        return None

    # ----------------------------------------------------------------- tracing

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.request_counts[pdu.dev_id] += 1
        return pdu

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        rtu = self.framer is FramerType.RTU
        unit = data[0] if rtu else (data[6] if len(data) > 6 else 0)
        meter = self.units.get(unit)
        if meter is None:
            return b""  # nobody on the line has that unit id
        if not meter.faults:
            return data
        if meter.fault("no_answer") is not None:
            return b""
        out = bytearray(data)
        wrong = meter.fault("wrong_address")
        if wrong is not None:
            other = int(wrong.params.get("unit", unit % 247 + 1))
            if rtu:
                out[0] = other
                out[-2:] = _crc16(bytes(out[:-2])).to_bytes(2, "little")
            else:
                out[6] = other
        if meter.fault("bad_checksum") is not None:
            out[-1] ^= 0xFF
        garbage = meter.fault("garbage")
        if garbage is not None:
            length = int(garbage.params.get("length", 8))
            noise = bytes(self._rng.randrange(256) for _ in range(length))
            if garbage.params.get("only", False):
                return noise
            out[:0] = noise
        return bytes(out)

    # ---------------------------------------------------------------- lifecycle

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 = any free port); returns the port."""
        self.framer = FramerType.SOCKET
        server = ModbusTcpServer(
            self._devices(),
            address=(host, port),
            trace_packet=self._trace_packet,
            trace_pdu=self._trace_pdu,
        )
        if not await server.listen():
            raise OSError(f"{self.name}: cannot listen on {host}:{port}")
        self._server = server
        sockets = getattr(server.transport, "sockets", None) or []
        bound = int(sockets[0].getsockname()[1]) if sockets else port
        self.endpoint = f"{host}:{bound}"
        return bound

    async def start_pty(self, link: str | Path | None = None) -> str:
        """Serve Modbus RTU on a pty; returns the device path a client opens."""
        self.framer = FramerType.RTU
        self._bridge = PtyBridge(link)
        server = ModbusSerialServer(
            self._devices(),
            framer=FramerType.RTU,
            port=self._bridge.server_path,
            baudrate=self.baud,
            trace_packet=self._trace_packet,
            trace_pdu=self._trace_pdu,
        )
        if not await server.listen():
            self._bridge.close()
            raise OSError(f"{self.name}: cannot open {self._bridge.server_path}")
        self._server = server
        self.endpoint = self._bridge.client_path
        return self._bridge.client_path

    async def stop(self) -> None:
        """Stop serving and release the port or pty."""
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    async def __aenter__(self) -> ModbusServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
