"""Protocol variants, control-code bits, function codes and error flags."""

from __future__ import annotations

import enum
from typing import Final


class Variant(enum.StrEnum):
    """Which edition of DL/T 645 a meter speaks (the names used in config files)."""

    V2007 = "dlt645-2007"
    V1997 = "dlt645-1997"


# Control byte C: bit 7 direction, bit 6 abnormal, bit 5 follow-up, bits 4-0 function.
DIRECTION_BIT: Final = 0x80
"""Set in frames sent by the meter (replies)."""
ABNORMAL_BIT: Final = 0x40
"""Set in abnormal (error) replies."""
FOLLOW_UP_BIT: Final = 0x20
"""Set in replies that have follow-up frames."""
FUNCTION_MASK: Final = 0x1F


class Function2007(enum.IntEnum):
    """Function codes of DL/T 645-2007 (the low five bits of the control byte)."""

    BROADCAST_TIME = 0x08
    READ_DATA = 0x11
    READ_FOLLOWUP = 0x12
    READ_ADDRESS = 0x13
    WRITE_DATA = 0x14
    WRITE_ADDRESS = 0x15
    FREEZE = 0x16
    CHANGE_BAUD = 0x17
    CHANGE_PASSWORD = 0x18
    CLEAR_DEMAND = 0x19
    CLEAR_METER = 0x1A
    CLEAR_EVENTS = 0x1B


class Function1997(enum.IntEnum):
    """Function codes of DL/T 645-1997 (the low five bits of the control byte)."""

    READ_DATA = 0x01
    READ_FOLLOWUP = 0x02
    WRITE_DATA = 0x04
    BROADCAST_TIME = 0x08
    WRITE_ADDRESS = 0x0A
    CHANGE_BAUD = 0x0C


FUNCTIONS: Final[dict[Variant, type[Function2007] | type[Function1997]]] = {
    Variant.V2007: Function2007,
    Variant.V1997: Function1997,
}

DI_LENGTH: Final = {Variant.V2007: 4, Variant.V1997: 2}
"""Bytes of a data identifier on the wire, per variant."""


def function_name(function: int, variant: Variant) -> str:
    """Name of a function code in a variant, or ``0xNN`` if the variant has none."""
    enum_type = FUNCTIONS[variant]
    try:
        return enum_type(function).name
    except ValueError:
        return f"0x{function:02X}"


def variant_of_function(function: int) -> Variant | None:
    """The variant a function code belongs to, when only one of them has it.

    ``0x08`` (broadcast time) exists in both and gives ``None``.
    """
    in_2007 = function in Function2007._value2member_map_
    in_1997 = function in Function1997._value2member_map_
    if in_2007 and not in_1997:
        return Variant.V2007
    if in_1997 and not in_2007:
        return Variant.V1997
    return None


class ErrorFlags(enum.IntFlag):
    """The error byte of an abnormal reply (bit meanings of DL/T 645-2007).

    DL/T 645-1997 names bit 0 "illegal data" and bit 1 "wrong data identifier";
    the same flags are used for both variants.
    """

    OTHER = 0x01
    NO_DATA = 0x02
    UNAUTHORISED = 0x04
    BAUD_UNCHANGEABLE = 0x08
    YEAR_ZONES_EXCEEDED = 0x10
    DAY_PERIODS_EXCEEDED = 0x20
    TARIFFS_EXCEEDED = 0x40


def flag_names(flags: ErrorFlags) -> list[str]:
    """Names of the flags set in ``flags`` (unknown bits as ``0xNN``), lowest bit first."""
    names: list[str] = []
    for bit in range(8):
        value = 1 << bit
        if flags & value:
            try:
                name = ErrorFlags(value).name
            except ValueError:
                name = None
            names.append(name or f"0x{value:02X}")
    return names
