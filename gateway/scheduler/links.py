"""Build the reader (transport and session) a bus config describes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from drivers.dlt645 import Dlt645Session
from drivers.modbus import ModbusSession
from drivers.transport import SerialTransport, StreamTransport, TcpTransport
from gateway.config.southbound import BusConfig
from gateway.scheduler.readers import Dlt645Reader, MeterReader, ModbusReader
from protocols.dlt645 import Variant


def link_name(bus: BusConfig) -> str:
    """The port path or ``host:port`` of a bus."""
    if bus.serial is not None:
        return bus.serial.port
    assert bus.tcp is not None  # the config guarantees exactly one link
    return f"{bus.tcp.host}:{bus.tcp.port}"


def build_transport(bus: BusConfig) -> StreamTransport:
    """The byte transport of a DL/T 645 bus."""
    backoff_max = min(bus.offline_backoff_max, 5.0)
    if bus.serial is not None:
        s = bus.serial
        return SerialTransport(
            s.port,
            baud=s.baud,
            parity=s.parity,
            bytesize=s.bytesize,
            stopbits=s.stopbits,
            inter_frame_delay=bus.inter_frame_delay,
            reopen_backoff_max=backoff_max,
        )
    assert bus.tcp is not None
    return TcpTransport(
        bus.tcp.host,
        bus.tcp.port,
        connect_timeout=bus.tcp.connect_timeout,
        inter_frame_delay=bus.inter_frame_delay,
        reopen_backoff_max=backoff_max,
    )


def build_reader(
    bus: BusConfig,
    *,
    profile_dirs: Sequence[Path] = (),
    on_discard: Callable[[str], None] | None = None,
) -> MeterReader:
    """The reader for a bus: DL/T 645 over serial/TCP, or Modbus RTU/TCP/RTU-over-TCP."""
    if bus.protocol.startswith("dlt645"):
        session = Dlt645Session(
            build_transport(bus),
            Variant(bus.protocol),
            timeout=bus.timeout,
            retries=bus.retries,
            on_discard=on_discard,
        )
        return Dlt645Reader(session)
    if bus.serial is not None:
        s = bus.serial
        modbus = ModbusSession.serial(
            s.port,
            baud=s.baud,
            parity=s.parity,
            bytesize=s.bytesize,
            stopbits=s.stopbits,
            timeout=bus.timeout,
            retries=bus.retries,
            max_gap=bus.max_gap,
            max_registers=bus.max_registers,
        )
    else:
        assert bus.tcp is not None
        modbus = ModbusSession.tcp(
            bus.tcp.host,
            bus.tcp.port,
            rtu_framing=bus.protocol == "modbus-rtu",
            timeout=bus.timeout,
            retries=bus.retries,
            max_gap=bus.max_gap,
            max_registers=bus.max_registers,
        )
    return ModbusReader(modbus, profile_dirs)
