"""How long a Modbus transaction holds its line, for the capacity estimate
(:mod:`gateway.config.capacity`).

A poll takes one transaction per merged read; on a serial line a transaction
costs its bytes and the 3.5-character silences that end its frames, plus the
device's reply delay. Over TCP the reply delay is what counts. The figures
are typical, not worst cases.
"""

from __future__ import annotations

from gateway.config.southbound import BusConfig

TURNAROUND_RTU_S = 0.02
"""Typical reply delay of a serial Modbus device, seconds."""
TURNAROUND_TCP_S = 0.005
"""Typical round trip to a Modbus TCP device or through a serial server, seconds."""


def transaction_seconds(bus: BusConfig, registers: int = 0) -> float:
    """The time one read of ``registers`` takes on ``bus``, with the reply delay."""
    if bus.serial is None:  # Modbus TCP, or RTU over a TCP gateway
        return TURNAROUND_TCP_S + bus.inter_frame_delay
    s = bus.serial
    char_bits = 1 + s.bytesize + (0 if s.parity == "N" else 1) + s.stopbits
    request, reply = 8, 5 + 2 * registers
    silence = 2 * 3.5  # the 3.5 characters that end each frame
    wire = (request + reply + silence) * char_bits / s.baud
    return wire + TURNAROUND_RTU_S + bus.inter_frame_delay
