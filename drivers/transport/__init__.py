"""Byte transports: serial ports and TCP sockets, one transaction at a time."""

from drivers.transport.base import StreamTransport
from drivers.transport.serial import SerialTransport
from drivers.transport.tcp import TcpTransport

__all__ = ["SerialTransport", "StreamTransport", "TcpTransport"]
