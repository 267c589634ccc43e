"""Build the reader (transport and session) a bus config describes: its protocol's
plugin does (:mod:`gateway.southbound.registry`); a byte transport for the
protocols that frame their own bytes is built here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from drivers.transport import SerialTransport, StreamTransport, TcpTransport
from gateway.config.southbound import BusConfig
from gateway.southbound.reader import MeterReader
from gateway.southbound.registry import plugin_for


def link_name(bus: BusConfig) -> str:
    """The port path or ``host:port`` of a bus."""
    if bus.serial is not None:
        return bus.serial.port
    assert bus.tcp is not None  # the config guarantees exactly one link
    return f"{bus.tcp.host}:{bus.tcp.port}"


def build_transport(bus: BusConfig) -> StreamTransport:
    """The byte transport of a bus (serial port or TCP), for protocols framed by our
    own codecs (DL/T 645)."""
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
    """The reader for a bus, from its protocol's plugin (not opened: no I/O)."""
    return plugin_for(bus.protocol).open_reader(
        bus, profile_dirs=profile_dirs, on_discard=on_discard
    )
