"""The data identifier (DI) registry: one table of what each DI means.

Each entry says the canonical quantity key (from :mod:`protocols.quantities`),
unit, BCD format (digits, decimals, signed), byte length and kind. Block DIs
(``...FF..``) list their member DIs. The table is data: families (tariffs,
phases, the N-th last freeze) are written as rows and expanded below, never
as code per DI.

Formats follow DL/T 645-2007 appendix A and DL/T 645-1997 as summarised in
``protocol-notes.md``. Kinds:

``value``           one BCD number (``digits``/``decimals``/``signed``)
``block``           the concatenation of its ``members`` (all the same length)
``freeze_energy``   a block stored at a freeze (members are the live DIs)
``status``          a 16-bit status word, little-endian bit field (not BCD)
``date``/``time``/``datetime``/``freeze_time``  clock fields, see :mod:`.dates`
``address``         a 6-byte meter address
``load_profile``    load-profile records, see :mod:`.records`

Beyond ``protocol-notes.md`` (taken from the standards' DI tables, to be
checked against a real meter before billing relies on them): 2007 reactive
power ``0204xx00``, apparent power ``02050000``, neutral current ``02800001``,
date-time ``0400010C``, the status-word block ``040005FF``, the daily freeze's
export energy ``050602NN``, the hourly freeze energy ``050401NN`` as the import
total only, and 1997 per-phase active power
``B631..B633`` and power factor ``B650..B653``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from protocols.dlt645.codes import DI_LENGTH, Variant
from protocols.dlt645.errors import UnknownDataId
from protocols.quantities import QUANTITIES, TARIFF_NAMES


@dataclass(frozen=True, slots=True)
class DataItem:
    """What one data identifier carries and how it is encoded."""

    di: int
    variant: Variant
    key: str | None
    unit: str
    length: int
    digits: int
    decimals: int
    signed: bool
    kind: str
    members: tuple[int, ...] = ()
    description: str = ""


def format_di(di: int, variant: Variant = Variant.V2007) -> str:
    """Printed form of a DI: 8 hex digits for 2007, 4 for 1997 (``00010000``, ``9010``)."""
    return f"{di:0{2 * DI_LENGTH[variant]}X}"


# Number formats: (length, digits, decimals, signed, unit).
_ENERGY = (4, 8, 2, False, "kWh")  # XXXXXX.XX
_V_2007 = (2, 4, 1, False, "V")  # XXX.X
_A_2007 = (3, 6, 3, True, "A")  # XXX.XXX
_KW_2007 = (3, 6, 4, True, "kW")  # XX.XXXX
_KVAR_2007 = (3, 6, 4, True, "kvar")
_KVA_2007 = (3, 6, 4, True, "kVA")
_PF_2007 = (2, 4, 3, True, "")  # X.XXX
_HZ = (2, 4, 2, False, "Hz")  # XX.XX
_V_1997 = (2, 3, 0, False, "V")  # XXX
_A_1997 = (2, 4, 2, False, "A")  # XX.XX
_KW_1997 = (3, 6, 4, False, "kW")  # XX.XXXX
_PF_1997 = (2, 4, 3, False, "")  # X.XXX

_TARIFFS = tuple(f"t{n}" for n in range(1, len(TARIFF_NAMES) + 1))
_PHASES = ("l1", "l2", "l3")

# Families of single values: (first DI, DI step, block DI or None, key pattern,
# the names substituted into the pattern in DI order, format, description).
_FAMILIES_2007: Final = (
    (0x00000000, 0x100, 0x0000FF00, "energy_combined_{}_kwh", ("total", *_TARIFFS), _ENERGY,
     "combined active energy"),
    (0x00010000, 0x100, 0x0001FF00, "energy_import_{}_kwh", ("total", *_TARIFFS), _ENERGY,
     "import (forward) active energy"),
    (0x00020000, 0x100, 0x0002FF00, "energy_export_{}_kwh", ("total", *_TARIFFS), _ENERGY,
     "export (reverse) active energy"),
    (0x02010100, 0x100, 0x0201FF00, "voltage_{}_v", _PHASES, _V_2007, "voltage"),
    (0x02020100, 0x100, 0x0202FF00, "current_{}_a", _PHASES, _A_2007, "current"),
    (0x02030000, 0x100, 0x0203FF00, "power_active_{}_kw", ("total", *_PHASES), _KW_2007,
     "active power"),
    (0x02040000, 0x100, 0x0204FF00, "power_reactive_{}_kvar", ("total", *_PHASES), _KVAR_2007,
     "reactive power"),
    (0x02050000, 0x100, None, "power_apparent_{}_kva", ("total",), _KVA_2007, "apparent power"),
    (0x02060000, 0x100, 0x0206FF00, "power_factor_{}", ("total", *_PHASES), _PF_2007,
     "power factor"),
    (0x02800001, 0x1, None, "current_{}_a", ("n",), _A_2007, "neutral current"),
    (0x02800002, 0x1, None, "frequency_hz", ("",), _HZ, "grid frequency"),
    (0x04000501, 0x1, 0x040005FF, "status_word_{}", tuple(str(n) for n in range(1, 8)),
     (2, 0, 0, False, ""), "running status word"),
)  # fmt: skip

_FAMILIES_1997: Final = (
    (0x9010, 0x1, 0x901F, "energy_import_{}_kwh", ("total", *_TARIFFS), _ENERGY,
     "import (forward) active energy"),
    (0x9020, 0x1, 0x902F, "energy_export_{}_kwh", ("total", *_TARIFFS), _ENERGY,
     "export (reverse) active energy"),
    (0xB611, 0x1, 0xB61F, "voltage_{}_v", _PHASES, _V_1997, "voltage"),
    (0xB621, 0x1, 0xB62F, "current_{}_a", _PHASES, _A_1997, "current"),
    (0xB630, 0x1, 0xB63F, "power_active_{}_kw", ("total", *_PHASES), _KW_1997, "active power"),
    (0xB650, 0x1, 0xB65F, "power_factor_{}", ("total", *_PHASES), _PF_1997, "power factor"),
)  # fmt: skip

# Single non-numeric items: (DI, kind, length, description).
_SINGLES_2007: Final = (
    (0x04000101, "date", 4, "date and weekday YYMMDDWW"),
    (0x04000102, "time", 3, "time hhmmss"),
    (0x0400010C, "datetime", 7, "date, weekday and time YYMMDDWWhhmmss"),
    (0x04000401, "address", 6, "communication address"),
    (0x06000001, "load_profile", 0, "load-profile records from a given time"),
)
_SINGLES_1997: Final = (
    (0xC010, "date", 4, "date and weekday YYMMDDWW"),
    (0xC011, "time", 3, "time hhmmss"),
)

# Freezes, 2007: (time DI base or None when another row has it, energy DI base, how many
# are kept, energy members, what). DL/T 645-2007 appendix A, frozen data (DI3 = 05):
# DI1 01 is import, 02 export active energy, total and tariffs.
_FREEZES: Final = (
    (0x05060000, 0x05060100, 62, (0x00010000, 0x00010100, 0x00010200, 0x00010300, 0x00010400),
     "import active energy of daily freeze"),
    (None, 0x05060200, 62, (0x00020000, 0x00020100, 0x00020200, 0x00020300, 0x00020400),
     "export active energy of daily freeze"),
    (0x05040000, 0x05040100, 254, (0x00010000,), "import active energy of hourly freeze"),
)  # fmt: skip
MAX_DAILY_FREEZES: Final = 62
MAX_HOURLY_FREEZES: Final = 254


def _build() -> dict[tuple[Variant, int], DataItem]:
    table: dict[tuple[Variant, int], DataItem] = {}

    def add(item: DataItem) -> None:
        if (item.variant, item.di) in table:  # pragma: no cover - guards the table itself
            raise ValueError(f"duplicate DI {format_di(item.di, item.variant)}")
        if item.key is not None and item.key not in QUANTITIES:  # pragma: no cover
            raise ValueError(f"DI {format_di(item.di, item.variant)}: unknown key {item.key}")
        table[(item.variant, item.di)] = item

    for variant, families, singles in (
        (Variant.V2007, _FAMILIES_2007, _SINGLES_2007),
        (Variant.V1997, _FAMILIES_1997, _SINGLES_1997),
    ):
        for first, step, block, pattern, names, fmt, what in families:
            length, digits, decimals, signed, unit = fmt
            kind = "status" if pattern.startswith("status") else "value"
            member_dis: list[int] = []
            for i, name in enumerate(names):
                di = first + i * step
                key = pattern.format(name)
                add(DataItem(di, variant, key, unit, length, digits, decimals, signed, kind,
                             description=f"{what}, {name}" if name else what))  # fmt: skip
                member_dis.append(di)
            if block is not None:
                size = length * len(member_dis)
                add(DataItem(block, variant, None, unit, size, digits, decimals, signed, "block",
                             tuple(member_dis), f"{what}, block"))  # fmt: skip
        for di, kind, length, what in singles:
            add(DataItem(di, variant, None, "", length, 0, 0, False, kind, description=what))
    for time_base, energy_base, count, stored, what in _FREEZES:
        for n in range(1, count + 1):
            if time_base is not None:
                add(DataItem(time_base + n, Variant.V2007, None, "", 5, 0, 0, False,
                             "freeze_time", description=f"time of {what.split(' of ')[1]} {n} "
                             "(1 = latest)"))  # fmt: skip
            add(DataItem(energy_base + n, Variant.V2007, None, "kWh", 4 * len(stored), 8, 2,
                         False, "freeze_energy", stored, f"{what} {n} (1 = latest)"))  # fmt: skip
    return table


_TABLE: Final = _build()
REGISTRY: Final[Mapping[tuple[Variant, int], DataItem]] = MappingProxyType(_TABLE)
"""Every known DI, keyed by ``(variant, di)``."""


def lookup(di: int, variant: Variant = Variant.V2007) -> DataItem:
    """The registry entry of a DI; raises :class:`UnknownDataId` naming it."""
    item = _TABLE.get((variant, di))
    if item is None:
        raise UnknownDataId(f"unknown {variant} data identifier {format_di(di, variant)}")
    return item
