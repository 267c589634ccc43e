"""Whether a bus's schedule fits its line, estimated from the config alone.

RS-485 carries one transaction at a time. A poll of a meter takes one transaction per
DL/T 645 data identifier (block DIs cover several quantities) or per merged Modbus read;
a transaction costs its bytes on the wire at the line's speed plus the device's reply
delay. Summed over the meters of each poll group and divided by the group's interval,
that is the share of the line the schedule needs. Past :data:`FULL`, ticks will be
skipped (the daemon then counts them and raises ``poll_overrun``); check-config says
so before the box is installed.

The figures are typical, not worst cases: a meter slower to answer than
:data:`TURNAROUND_S` makes the real load higher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from gateway.config.southbound import BusConfig, PollGroupConfig

FULL = 0.9
"""Share of the line past which a schedule is reported (retries and backfill need room)."""
TURNAROUND_S = {"dlt645": 0.05, "modbus-rtu": 0.02, "modbus-tcp": 0.005}
"""Typical reply delay of a device, seconds (DL/T 645 meters: 20-500 ms; with it a read of
one value at 2400 baud takes the 0.2-0.3 s seen in the field)."""
DLT645_REQUEST_BYTES = 4 + 12 + 4
"""Wake-up bytes, the frame's 12 bytes of address, control, length, checksum and end, and
the data identifier."""
DLT645_REPLY_BYTES = 4 + 12 + 4
"""The same around a reply, before its values (:data:`DLT645_VALUE_BYTES` each)."""
DLT645_VALUE_BYTES = 4
"""A typical value: energy registers take 4 bytes, voltages 2, currents and power 3."""
TCP_DLT645_BAUD = 2400
"""A DL/T 645 bus over TCP is a transparent serial server: its line speed is not in the
config, so the common meter default is assumed."""


def transaction_seconds(bus: BusConfig, registers: int = 0, values: int = 1) -> float:
    """The time one transaction of ``bus`` takes on the wire, with the reply delay: a
    Modbus read of ``registers``, or a DL/T 645 read that brings ``values`` values."""
    if bus.protocol.startswith("dlt645"):
        baud = bus.serial.baud if bus.serial is not None else TCP_DLT645_BAUD
        char_bits = 11  # 8 data bits, even parity, start and stop
        size = DLT645_REQUEST_BYTES + DLT645_REPLY_BYTES + DLT645_VALUE_BYTES * values
        wire = size * char_bits / baud
        return wire + TURNAROUND_S["dlt645"] + bus.inter_frame_delay
    if bus.serial is None:  # Modbus TCP, or RTU over a TCP gateway
        return TURNAROUND_S["modbus-tcp"] + bus.inter_frame_delay
    s = bus.serial
    char_bits = 1 + s.bytesize + (0 if s.parity == "N" else 1) + s.stopbits
    request, reply = 8, 5 + 2 * registers
    silence = 2 * 3.5  # the 3.5 characters that end each frame
    wire = (request + reply + silence) * char_bits / s.baud
    return wire + TURNAROUND_S["modbus-rtu"] + bus.inter_frame_delay


def bus_load(
    bus: BusConfig, groups: Mapping[str, PollGroupConfig], profile_dirs: Sequence[Path] = ()
) -> tuple[float, dict[str, float]]:
    """The share of ``bus``'s line its schedule needs, in all and per poll group.
    Meters whose quantities cannot be planned (already reported as problems) are left out."""
    from drivers.dlt645.plan import UnmappedKeys, plan_dis
    from drivers.modbus.planner import RegisterSpan, plan_reads
    from protocols.dlt645 import Variant
    from protocols.modbus_profile import ProfileError, resolve_profile

    per_group: dict[str, float] = {}
    for meter in bus.meters:
        for name in meter.poll:
            group = groups.get(name)
            if group is None or group.interval <= 0:
                continue
            keys = list(dict.fromkeys(group.quantities))
            try:
                if bus.protocol.startswith("dlt645"):
                    dis = len(plan_dis(keys, Variant(bus.protocol)))
                    cost = dis * transaction_seconds(bus, values=max(1, len(keys) // dis))
                else:
                    profile = resolve_profile(meter.profile or "", profile_dirs)
                    specs = [profile.by_key(k) for k in keys if k in profile.keys]
                    spans = [RegisterSpan(s.key, s.function, s.address, s.count) for s in specs]
                    blocks = plan_reads(spans, max_gap=bus.max_gap, max_registers=bus.max_registers)
                    cost = sum(transaction_seconds(bus, b.count) for b in blocks)
            except (UnmappedKeys, ProfileError, KeyError, ValueError):
                continue
            per_group[name] = per_group.get(name, 0.0) + cost / group.interval
    return sum(per_group.values()), per_group


def schedule_warnings(
    buses: Sequence[BusConfig],
    groups: Mapping[str, PollGroupConfig],
    profile_dirs: Sequence[Path] = (),
) -> list[tuple[str, str]]:
    """``(location, message)`` for each bus whose schedule does not fit its line."""
    out: list[tuple[str, str]] = []
    for b, bus in enumerate(buses):
        load, per_group = bus_load(bus, groups, profile_dirs)
        if load <= FULL:
            continue
        worst = max(per_group, key=lambda g: per_group[g])
        interval = groups[worst].interval
        fits = interval * per_group[worst] / max(FULL - (load - per_group[worst]), 0.05)
        out.append(
            (
                f"buses[{b}]",
                f"bus {bus.name!r}: its poll schedule needs about {load:.0%} of the line "
                f"(estimated from its meters, poll groups and line speed), so polls will be "
                f"skipped; poll group {worst!r} alone needs {per_group[worst]:.0%}: an interval "
                f"of about {fits:.3g} s, fewer meters or a faster line would fit",
            )
        )
    return out
