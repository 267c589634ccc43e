"""Payload values: DI payload bytes (offset already removed) to and from ``Decimal``.

Numbers keep their exact scale: a reply of ``00 00 00 00`` for an energy DI is
``Decimal("0.00")``. Nothing here ever goes through ``float``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from protocols.dlt645.bcd import address_from_bytes, address_to_bytes, encode_number
from protocols.dlt645.codes import Variant
from protocols.dlt645.dates import LAYOUTS, decode_clock, encode_clock
from protocols.dlt645.errors import (
    DataKindError,
    LocalProtocolError,
    RemoteDataError,
    UnknownDataId,
)
from protocols.dlt645.registry import REGISTRY, DataItem, format_di, lookup

_NUMERIC_KINDS = frozenset({"value", "status", "block", "freeze_energy"})
_CLOCK_KINDS = frozenset(LAYOUTS) - {"broadcast"}


@dataclass(frozen=True, slots=True)
class Value:
    """One decoded quantity: canonical key, exact value, unit, and the DI it came from.

    For a block, ``di`` is the member's own DI (``00010100`` for tariff 1 in a
    ``0001FF00`` reply).
    """

    key: str
    value: Decimal
    unit: str
    di: int


# Hot path: set the slots directly rather than through the frozen __init__
# (see protocols.dlt645.frame._frame for why).
_new = object.__new__
_set_key = Value.__dict__["key"].__set__
_set_value = Value.__dict__["value"].__set__
_set_unit = Value.__dict__["unit"].__set__
_set_di = Value.__dict__["di"].__set__


def _value(key: str, value: Decimal, unit: str, di: int) -> Value:
    out: Value = _new(Value)
    _set_key(out, key)
    _set_value(out, value)
    _set_unit(out, unit)
    _set_di(out, di)
    return out


def _name(item: DataItem) -> str:
    return f"DI {format_di(item.di, item.variant)}"


# A member's decoding facts, flattened for the hot path:
# (key, unit, decimals, signed, is_status, di).
_Member = tuple[str, str, int, bool, bool, int]
# A DI's plan: (exactly one member?, member length, members, registry entry).
_Plan = tuple[bool, int, tuple[_Member, ...], DataItem]


def _member(item: DataItem) -> _Member:
    return (item.key or "", item.unit, item.decimals, item.signed, item.kind == "status", item.di)


def _plan(item: DataItem) -> _Plan:
    if item.kind in ("value", "status"):
        return (True, item.length, (_member(item),), item)
    members = tuple(lookup(m, item.variant) for m in item.members)
    return (False, members[0].length, tuple(_member(m) for m in members), item)


def _plans(variant: Variant) -> dict[int, _Plan]:
    return {
        di: _plan(item)
        for (v, di), item in REGISTRY.items()
        if v is variant and item.kind in _NUMERIC_KINDS
    }


_PLANS_2007: Final = _plans(Variant.V2007)
_PLANS_1997: Final = _plans(Variant.V1997)
_V2007: Final = Variant.V2007


def _decode_member(member: _Member, raw: bytes, item: DataItem) -> Value:
    key, unit, decimals, signed, status, di = member
    if status:
        return _value(key, Decimal(int.from_bytes(raw, "little")), unit, di)
    if signed and raw[-1] & 0x80:
        raw = raw[:-1] + bytes((raw[-1] & 0x7F,))
        negative = True
    else:
        negative = False
    text = raw[::-1].hex()
    if not text.isdigit():
        raise RemoteDataError(f"{_name(item)} ({key or 'block'}): not BCD: {raw.hex(' ').upper()}")
    value = Decimal(text).scaleb(-decimals) if decimals else Decimal(text)
    return _value(key, -value if negative else value, unit, di)


def decode_payload(di: int, payload: bytes, variant: Variant = Variant.V2007) -> list[Value]:
    """The values of a read reply's payload: one for a value DI, one per member of a block.

    A block may hold fewer members than the table lists (a meter with two
    tariffs) or more (tariffs 5 and up, which have no quantity key and are
    skipped), but only whole members. Raises :class:`RemoteDataError` naming
    the DI on a wrong length or bad BCD, :class:`UnknownDataId` for a DI the
    registry lacks, and :class:`DataKindError` for clock, address and
    load-profile DIs (use :func:`decode_datetime`, :func:`decode_address`,
    :func:`decode_load_profile`).
    """
    plan = (_PLANS_2007 if variant == _V2007 else _PLANS_1997).get(di)
    if plan is None:
        item = lookup(di, variant)  # raises UnknownDataId for an unknown DI
        raise DataKindError(
            f"{_name(item)} is a {item.kind}, not a number: {_use_instead(item.kind)}"
        )
    single, size, members, item = plan
    n = len(payload)
    if single:
        if n != size:
            raise RemoteDataError(
                f"{_name(item)} ({item.key}): payload of {n} bytes, expected {size}"
            )
        key, unit, decimals, signed, status, member_di = members[0]
        # Fast path of the typical poll (an unsigned or positive BCD number),
        # inlined; everything else goes through _decode_member.
        if not status and not (signed and payload[-1] & 0x80):
            text = payload[::-1].hex()
            if text.isdigit():
                value = Decimal(text).scaleb(-decimals) if decimals else Decimal(text)
                return [_value(key, value, unit, member_di)]
        return [_decode_member(members[0], payload, item)]
    if not n or n % size:
        raise RemoteDataError(
            f"{_name(item)}: payload of {n} bytes is not a whole number of {size}-byte members"
        )
    return [
        _decode_member(member, payload[i * size : (i + 1) * size], item)
        for i, member in enumerate(members[: n // size])
    ]


def encode_payload(di: int, values: Sequence[Decimal], variant: Variant = Variant.V2007) -> bytes:
    """Payload bytes of a value or block DI (for a block, one value per member, in order;
    fewer values than members send only the first ones).

    Raises :class:`LocalProtocolError` naming the DI when a value overflows its
    format, has too many decimals, is negative for an unsigned format, or the
    count is wrong; :class:`UnknownDataId` for an unknown DI.
    """
    item = lookup(di, variant)
    if item.kind not in _NUMERIC_KINDS:
        raise DataKindError(
            f"{_name(item)} is a {item.kind}, not a number: {_use_instead(item.kind)}"
        )
    if item.kind in ("value", "status"):
        if len(values) != 1:
            raise LocalProtocolError(f"{_name(item)} takes one value, got {len(values)}")
        members = [item]
    else:
        members = [lookup(m, variant) for m in item.members]
        if not 1 <= len(values) <= len(members):
            raise LocalProtocolError(
                f"{_name(item)} takes 1 to {len(members)} values, got {len(values)}"
            )
    out = bytearray()
    for member, value in zip(members, values, strict=False):
        if isinstance(value, float):
            raise LocalProtocolError(
                f"{_name(member)} ({member.key}): value {value!r} is a float; "
                "give a Decimal so that it stays exact"
            )
        out += _encode_member(member, Decimal(value))
    return bytes(out)


def _encode_member(item: DataItem, value: Decimal) -> bytes:
    if item.kind == "status":
        if value != value.to_integral_value() or not 0 <= value <= 0xFFFF:
            raise LocalProtocolError(f"{_name(item)}: status word {value} is not in 0..65535")
        return int(value).to_bytes(2, "little")
    try:
        return encode_number(value, item.length, item.digits, item.decimals, item.signed)
    except ValueError as exc:
        raise LocalProtocolError(f"{_name(item)} ({item.key}): {exc}") from None


def _clock_item(di: int, variant: Variant | None) -> DataItem:
    variants = (variant,) if variant is not None else (Variant.V2007, Variant.V1997)
    for v in variants:
        item = REGISTRY.get((v, di))
        if item is not None:
            if item.kind not in _CLOCK_KINDS:
                raise DataKindError(f"{_name(item)} is a {item.kind}, not a date or time")
            return item
    raise UnknownDataId(f"unknown data identifier {di:X}: not a date or time DI")


def decode_datetime(di: int, payload: bytes, variant: Variant | None = None) -> datetime:
    """Naive meter-local time of a date, time, date-time or freeze-time DI.

    A time-only DI gives the date 1900-01-01 (combine it with the date DI).
    Without ``variant`` the DI is looked up in 2007 first, then 1997 (their DIs
    do not overlap). Raises :class:`RemoteDataError` naming the DI on bad BCD,
    a wrong length or an impossible date.
    """
    item = _clock_item(di, variant)
    try:
        return decode_clock(payload, LAYOUTS[item.kind])
    except ValueError as exc:
        raise RemoteDataError(f"{_name(item)} ({item.description}): {exc}") from None


def encode_datetime(di: int, when: datetime, variant: Variant | None = None) -> bytes:
    """Payload bytes of a date, time, date-time or freeze-time DI holding ``when``."""
    item = _clock_item(di, variant)
    try:
        return encode_clock(when, LAYOUTS[item.kind])
    except ValueError as exc:
        raise LocalProtocolError(f"{_name(item)}: {exc}") from None


def decode_address(payload: bytes) -> str:
    """The address held in a 6-byte payload (DI ``04000401``, read-address replies).

    Raises :class:`RemoteDataError` if it is not 6 bytes of BCD.
    """
    text = address_from_bytes(payload) if len(payload) == 6 else ""
    if not text.isdigit():
        raise RemoteDataError(f"not a 6-byte BCD meter address: {payload.hex(' ').upper()}")
    return text


def encode_address(address: str) -> bytes:
    """The 6-byte payload of an address; :class:`LocalProtocolError` if malformed."""
    try:
        return address_to_bytes(address)
    except ValueError as exc:
        raise LocalProtocolError(str(exc)) from None


def _use_instead(kind: str) -> str:
    if kind in _CLOCK_KINDS:
        return "use decode_datetime"
    if kind == "address":
        return "use decode_address"
    return "use decode_load_profile"
