"""Checks across sections of a config that the schema alone cannot make.

Errors: names used twice, meters in poll groups that do not exist, meter time
zones. Warnings (the file runs, but probably not as meant): meters in no poll
group, a config with no source of readings, a config with no sink. Each is a
``(location, message)`` pair; :mod:`gateway.config.loader` adds the file name.
"""

from __future__ import annotations

from collections.abc import Collection

from gateway.config.base import did_you_mean
from gateway.config.model import Config, check_timezone

Finding = tuple[str, str]
"""``(location, message)``, e.g. ``("buses[0].meters[2].poll", "no poll group named 'x'")``."""


def reference_problems(config: Config, assume_groups: Collection[str] = ()) -> list[Finding]:
    """Duplicate bus names and meter ids, poll groups that do not exist, bad meter
    time zones. ``assume_groups`` are groups that exist but were invalid (already
    reported), so meters naming them are not reported again."""
    problems: list[Finding] = []
    bus_names: set[str] = set()
    meter_ids: set[str] = set()
    groups = set(config.poll_groups) | set(assume_groups)
    for b, bus in enumerate(config.buses):
        if bus.name in bus_names:
            problems.append((f"buses[{b}].name", f"duplicate bus name {bus.name!r}"))
        bus_names.add(bus.name)
        for m, meter in enumerate(bus.meters):
            where = f"buses[{b}].meters[{m}]"
            if meter.meter_id in meter_ids:
                problems.append((where, f"duplicate meter id {meter.meter_id!r}"))
            meter_ids.add(meter.meter_id)
            for group in meter.poll:
                if group not in groups:
                    hint = did_you_mean(group, groups)
                    message = f"no poll group named {group!r}" + (f"; {hint}" if hint else "")
                    problems.append((f"{where}.poll", message))
            if meter.timezone is not None:
                try:
                    check_timezone(meter.timezone)
                except ValueError as exc:
                    problems.append((f"{where}.timezone", str(exc)))
    return problems


def config_warnings(config: Config) -> list[Finding]:
    """What runs but reads or forwards nothing: meters in no poll group, no source
    (no meter on any bus and no ``[ingest]``), no sink."""
    warnings: list[Finding] = []
    for b, bus in enumerate(config.buses):
        for m, meter in enumerate(bus.meters):
            if not meter.poll:
                warnings.append(
                    (
                        f"buses[{b}].meters[{m}].poll",
                        f"meter {meter.meter_id!r} is in no poll group, so it is never read "
                        "(name a [poll_groups.NAME] in poll = [...])",
                    )
                )
    if not any(bus.meters for bus in config.buses) and config.ingest is None:
        warnings.append(("", "no source of readings: no [[buses.meters]] and no [ingest] section"))
    if not config.sinks.enabled():
        *others, last = [f"[sinks.{name}]" for name in config.sinks.sections()]
        choice = f"{', '.join(others)} or {last}" if others else last
        warnings.append(
            (
                "sinks",
                f"no sink: readings are kept in the buffer and forwarded nowhere (add {choice})",
            )
        )
    return warnings
