"""How long a DL/T 645 transaction holds its line, for the capacity estimate
(:mod:`gateway.config.capacity`).

A poll takes one transaction per data identifier (block DIs cover several
quantities); a transaction costs its bytes on the wire at the line's speed
plus the meter's reply delay. The figures are typical, not worst cases.
"""

from __future__ import annotations

from gateway.config.southbound import BusConfig

TURNAROUND_S = 0.05
"""Typical reply delay of a meter, seconds (DL/T 645 meters: 20-500 ms; with it a read of
one value at 2400 baud takes the 0.2-0.3 s seen in the field)."""
REQUEST_BYTES = 4 + 12 + 4
"""Wake-up bytes, the frame's 12 bytes of address, control, length, checksum and end, and
the data identifier."""
REPLY_BYTES = 4 + 12 + 4
"""The same around a reply, before its values (:data:`VALUE_BYTES` each)."""
VALUE_BYTES = 4
"""A typical value: energy registers take 4 bytes, voltages 2, currents and power 3."""
TCP_BAUD = 2400
"""A DL/T 645 bus over TCP is a transparent serial server: its line speed is not in the
config, so the common meter default is assumed."""


def transaction_seconds(bus: BusConfig, values: int = 1) -> float:
    """The time one read that brings ``values`` values takes on ``bus``'s wire, with
    the reply delay."""
    baud = bus.serial.baud if bus.serial is not None else TCP_BAUD
    char_bits = 11  # 8 data bits, even parity, start and stop
    size = REQUEST_BYTES + REPLY_BYTES + VALUE_BYTES * values
    wire = size * char_bits / baud
    return wire + TURNAROUND_S + bus.inter_frame_delay
