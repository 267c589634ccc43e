"""What ``metergw scan`` prints: poll groups of the quantities the meters found
answer, and a ``[[buses]]`` table with a ``[[buses.meters]]`` entry for each.

Meters are asked for the quantities of two templates (:data:`GROUPS`: energy
registers; instantaneous values) or, where the protocol reads a register map
(Modbus), what their map has; the protocol's plugin says which
(``snippet_groups``) and how a meter is named (``snippet_meter``). A group
holds what every meter polled with it answers, so the snippet passes
``metergw check-config`` and the daemon reads it as is.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ENERGY = (
    "energy_import_total_kwh",
    "energy_import_t1_kwh",
    "energy_import_t2_kwh",
    "energy_import_t3_kwh",
    "energy_import_t4_kwh",
    "energy_export_total_kwh",
)
INSTANT = (
    "voltage_l1_v",
    "voltage_l2_v",
    "voltage_l3_v",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "power_active_total_kw",
    "power_factor_total",
    "frequency_hz",
)
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "energy": ("15m", ENERGY),
    "instant": ("1m", INSTANT),
}
"""Group name -> (interval, the quantities a scan asks for)."""


@dataclass(frozen=True, slots=True)
class Found:
    """A meter that answered: where it sits (DL/T 645 address, Modbus unit id), and the
    quantities it answered, in template or profile order (None: not known, a Modbus
    meter scanned without a profile)."""

    ident: str
    answered: tuple[str, ...] | None


def poll_groups(found: Sequence[Found], *, by_kind: bool) -> dict[str, tuple[str, list[str]]]:
    """Group name -> (interval, the quantities every meter polled with it answers).

    DL/T 645 (``by_kind`` False): the template's quantities. Modbus (``by_kind``):
    whatever the profile has, energy registers (cumulative) in one group and the
    rest in the other."""
    out: dict[str, tuple[str, list[str]]] = {}
    for name, (interval, template) in GROUPS.items():
        per_meter = [_keys_in(f.answered, name, template, by_kind) for f in found if f.answered]
        per_meter = [keys for keys in per_meter if keys]
        if per_meter:
            common = [k for k in per_meter[0] if all(k in keys for keys in per_meter)]
            if common:
                out[name] = (interval, common)
    return out


def _keys_in(
    answered: Sequence[str], group: str, template: Sequence[str], by_kind: bool
) -> list[str]:
    from protocols.quantities import QUANTITIES

    if by_kind:
        return [k for k in answered if QUANTITIES[k].cumulative == (group == "energy")]
    return [k for k in template if k in answered]


def snippet(args: argparse.Namespace, found: Sequence[Found]) -> str:
    """Poll groups, then a ``[[buses]]`` table with one ``[[buses.meters]]`` per meter."""
    from gateway.southbound.registry import plugin_for

    plugin = plugin_for(args.protocol)
    notes, groups = plugin.snippet_groups(args, found)
    lines: list[str] = list(notes)
    for name, (interval, keys) in groups.items():
        lines += [f"[poll_groups.{name}]", f'interval = "{interval}"', "quantities = ["]
        lines += [f'    "{k}",' for k in keys]
        lines += ["]", ""]
    name = args.name or (Path(args.serial).name if args.serial else "tcp-" + args.tcp.split(":")[0])
    lines += ["[[buses]]", f'name = "{name}"', f'protocol = "{args.protocol}"']
    if args.serial:
        baud = args.baud or plugin.cli_serial[0]
        parity = args.parity or plugin.cli_serial[1]
        lines.append(f'serial = {{ port = "{args.serial}", baud = {baud}, parity = "{parity}" }}')
    else:
        host, _, port = args.tcp.rpartition(":")
        lines.append(f'tcp = {{ host = "{host}", port = {port} }}')
    lines.append(f"timeout = {max(args.timeout, 0.2):g}")
    for meter in found:
        lines += ["", "[[buses.meters]]"]
        lines += plugin.snippet_meter(args, meter)
        polled = [
            g
            for g, (_, keys) in groups.items()
            if meter.answered is None or all(k in meter.answered for k in keys)
        ]
        if polled:
            lines.append(f"poll = [{', '.join(f'{g!r}' for g in polled)}]".replace("'", '"'))
        else:
            lines.append("# answered none of the quantities asked for: see `metergw read`")
    return "\n".join(lines)
