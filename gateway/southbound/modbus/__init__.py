"""Modbus meters: RTU on a serial line, TCP, and RTU framing over TCP (a serial
server), read with register-map profiles (``config/profiles``).

``config`` (the bus and meter models), ``reader`` (what the bus task drives),
``line`` (the capacity estimate), ``commission`` (``metergw read`` and
``metergw scan``), ``plugin`` (the hooks the registry hands out).
"""

from gateway.southbound.modbus.plugin import ModbusPlugin

PLUGIN = ModbusPlugin()
"""The plugin the registry lists."""

__all__ = ["PLUGIN", "ModbusPlugin"]
