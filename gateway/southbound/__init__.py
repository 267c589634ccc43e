"""Meter protocols as plugins: the registry, the reader interface, and one folder
per protocol family (``dlt645``, ``modbus``).

A plugin (:class:`ProtocolPlugin`) brings its config models, its reader, its
config checks, its line-time estimate and its ``metergw read``/``scan``
hooks; :func:`register` adds one at run time. See docs/architecture.md,
"Adding a meter protocol".
"""

from gateway.southbound.reader import (
    MeterReader,
    MeterReaderOf,
    ReadResult,
    RecordSlice,
    Sample,
)
from gateway.southbound.registry import (
    ProtocolPlugin,
    plugin_for,
    plugins,
    protocol_names,
    register,
    registered,
    unregister,
)

__all__ = [
    "MeterReader",
    "MeterReaderOf",
    "ProtocolPlugin",
    "ReadResult",
    "RecordSlice",
    "Sample",
    "plugin_for",
    "plugins",
    "protocol_names",
    "register",
    "registered",
    "unregister",
]
