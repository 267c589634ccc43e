"""Whether a bus's schedule fits its line, estimated from the config alone.

RS-485 carries one transaction at a time. How long a poll of a meter holds the line is
its protocol's to say (its plugin's ``poll_seconds``: one transaction per DL/T 645 data
identifier or per merged Modbus read, each its bytes on the wire at the line's speed
plus the device's reply delay). Summed over the meters of each poll group and divided
by the group's interval, that is the share of the line the schedule needs. Past
:data:`FULL`, ticks will be skipped (the daemon then counts them and raises
``poll_overrun``); check-config says so before the box is installed.

The figures are typical, not worst cases: a meter slower to answer than its
protocol assumes makes the real load higher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from gateway.config.southbound import BusConfig, PollGroupConfig

FULL = 0.9
"""Share of the line past which a schedule is reported (retries and backfill need room)."""


def bus_load(
    bus: BusConfig, groups: Mapping[str, PollGroupConfig], profile_dirs: Sequence[Path] = ()
) -> tuple[float, dict[str, float]]:
    """The share of ``bus``'s line its schedule needs, in all and per poll group.
    Meters whose quantities cannot be planned (already reported as problems) are left out."""
    from gateway.southbound.registry import plugin_for

    plugin = plugin_for(bus.protocol)
    per_group: dict[str, float] = {}
    for meter in bus.meters:
        for name in meter.poll:
            group = groups.get(name)
            if group is None or group.interval <= 0:
                continue
            keys = list(dict.fromkeys(group.quantities))
            cost = plugin.poll_seconds(bus, meter, keys, profile_dirs)
            if cost is None:
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
