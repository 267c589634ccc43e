"""What ``metergw scan`` prints: poll groups of the quantities the meters found
answer, and a ``[[buses]]`` table with a ``[[buses.meters]]`` entry for each.

DL/T 645 meters are asked for the quantities of two templates (energy
registers; instantaneous values), one block where the variant has one, each
member alone if the meter refuses the block. A Modbus meter reads its
profile's registers. A group holds what every meter polled with it answers,
so the snippet passes ``metergw check-config`` and the daemon reads it as is.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """A meter that answered: its address (DL/T 645) or unit id (Modbus), and the
    quantities it answered, in template or profile order (None: not known, a Modbus
    meter scanned without a profile)."""

    ident: str
    answered: tuple[str, ...] | None


async def dlt645_quantities(session: Any, address: str) -> tuple[str, ...]:
    """The quantities of :data:`GROUPS` the meter at ``address`` answers."""
    from drivers.dlt645.plan import UnmappedKeys, plan_dis
    from drivers.errors import DriverError, LinkError
    from protocols.dlt645 import REGISTRY

    variant = session.variant
    single: dict[str, int] = {}
    for _, template in GROUPS.values():
        for key in template:
            try:
                single[key] = plan_dis([key], variant)[0]
            except UnmappedKeys:
                continue  # e.g. no frequency in DL/T 645-1997

    async def answered(di: int) -> set[str]:
        try:
            values = await session.read_values(address, di)
        except LinkError:
            raise
        except DriverError:
            return set()
        return {v.key for v in values if v.key in single}

    got: set[str] = set()
    for di in plan_dis(single, variant):
        keys = await answered(di)
        block = REGISTRY[(variant, di)]
        if not keys and block.kind == "block":
            # A meter may refuse a block (a single-phase meter asked for three
            # voltages) and still answer its members one by one.
            for member in single.values():
                if member in block.members:
                    keys |= await answered(member)
        got |= keys
    return tuple(k for k in single if k in got)


async def modbus_quantities(session: Any, unit: int, profile: Any) -> tuple[str, ...]:
    """The keys of ``profile`` the Modbus device ``unit`` answers (all in merged reads,
    or, if it refuses one, each register alone)."""
    from drivers.errors import DriverError, LinkError
    from drivers.modbus import RegisterSpan

    spans = [RegisterSpan(s.key, s.function, s.address, s.count) for s in profile.registers]
    try:
        await session.read_spans(unit, spans)
        return tuple(s.key for s in spans)
    except LinkError:
        raise
    except DriverError:
        pass
    got = []
    for span in spans:
        try:
            await session.read_spans(unit, [span])
        except LinkError:
            raise
        except DriverError:
            continue
        got.append(span.key)
    return tuple(got)


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
    modbus = args.protocol.startswith("modbus")
    groups = poll_groups(found, by_kind=modbus)
    lines: list[str] = []
    if modbus and not args.profile:
        lines += [
            "# Scanned without --profile: set each meter's profile (its register map: a",
            '# name such as "sdm630" or a path to a profile file; `metergw read --unit N',
            "# --profile NAME` shows what it reads), and keep in the poll group only",
            "# quantities the profile has (check-config names any that are missing).",
        ]
        groups = {"energy": ("15m", ["energy_import_total_kwh"])}
    for name, (interval, keys) in groups.items():
        lines += [f"[poll_groups.{name}]", f'interval = "{interval}"', "quantities = ["]
        lines += [f'    "{k}",' for k in keys]
        lines += ["]", ""]
    name = args.name or (Path(args.serial).name if args.serial else "tcp-" + args.tcp.split(":")[0])
    lines += ["[[buses]]", f'name = "{name}"', f'protocol = "{args.protocol}"']
    if args.serial:
        baud = args.baud or (9600 if modbus else 2400)
        parity = args.parity or ("N" if modbus else "E")
        lines.append(f'serial = {{ port = "{args.serial}", baud = {baud}, parity = "{parity}" }}')
    else:
        host, _, port = args.tcp.rpartition(":")
        lines.append(f'tcp = {{ host = "{host}", port = {port} }}')
    lines.append(f"timeout = {max(args.timeout, 0.2):g}")
    for meter in found:
        lines += ["", "[[buses.meters]]"]
        if modbus:
            lines.append(f"unit = {meter.ident}")
            if args.profile:
                lines.append(f'profile = "{_profile_ref(args.profile)}"')
            else:
                lines.append('# profile = "..."  # required: the register map of this meter')
        else:
            lines.append(f'address = "{meter.ident}"')
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


def _profile_ref(profile: str) -> str:
    # A path given on the command line is relative to here, not to the config file.
    if "/" in profile or profile.endswith(".toml"):
        return str(Path(profile).resolve())
    return profile
