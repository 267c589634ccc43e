"""Byte-level encodings of DL/T 645: the 0x33 offset, BCD numbers, addresses.

Everything multi-byte on the wire is least significant byte first. Numbers are
packed BCD; a signed quantity carries its sign in the top bit of the most
significant byte. The hot paths use ``bytes.translate`` with precomputed tables
and ``bytes.hex`` instead of per-byte Python loops.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

ADD_33: Final = bytes((b + 0x33) & 0xFF for b in range(256))
"""``data.translate(ADD_33)`` applies the +0x33 offset of the DATA field."""
SUB_33: Final = bytes((b - 0x33) & 0xFF for b in range(256))
"""``data.translate(SUB_33)`` removes the +0x33 offset of the DATA field."""

ADDRESS_LENGTH: Final = 6
WILDCARD_ADDRESS: Final = "AAAAAAAAAAAA"
BROADCAST_ADDRESS: Final = "999999999999"

_ADDRESS_DIGITS: Final = frozenset("0123456789A")
_address_cache: dict[bytes, str] = {}
_ADDRESS_CACHE_MAX: Final = 4096


def address_to_bytes(address: str) -> bytes:
    """Wire form of a 12-digit address (``"123456789012"`` -> ``12 90 78 56 34 12``).

    ``A`` is accepted as a wildcard digit (``AAAAAAAAAAAA`` reads any meter's
    address). Raises ``ValueError`` naming the address when it is malformed.
    """
    norm = address.upper()
    if len(norm) != 2 * ADDRESS_LENGTH or not set(norm) <= _ADDRESS_DIGITS:
        raise ValueError(
            f"meter address {address!r} must be 12 digits 0-9 (or the wildcard digit A)"
        )
    return bytes.fromhex(norm)[::-1]


def address_from_bytes(raw: bytes) -> str:
    """Printed form of a 6-byte wire address, most significant digit first.

    Never raises: bytes that are not BCD show as their hex digits, so a
    corrupted address is still readable in a log.
    """
    text = _address_cache.get(raw)
    if text is None:
        text = raw[::-1].hex().upper()
        if len(_address_cache) >= _ADDRESS_CACHE_MAX:
            _address_cache.clear()
        _address_cache[raw] = text
    return text


def bcd_digits(raw: bytes) -> str:
    """The decimal digits of little-endian packed BCD, most significant first.

    Raises ``ValueError`` if a nibble is not a decimal digit.
    """
    text = raw[::-1].hex()
    if not text.isdigit():
        raise ValueError(f"not BCD: {raw.hex(' ').upper()}")
    return text


def decode_number(raw: bytes, decimals: int, signed: bool) -> Decimal:
    """Decimal value of a BCD field with ``decimals`` implied decimal places.

    The scale of the result is exact (``00 00 00 00`` with 2 decimals is
    ``Decimal("0.00")``). Raises ``ValueError`` on a non-BCD nibble.
    """
    negative = False
    if signed and raw and raw[-1] & 0x80:
        negative = True
        raw = raw[:-1] + bytes((raw[-1] & 0x7F,))
    text = raw[::-1].hex()
    if not text.isdigit():
        raise ValueError(f"not BCD: {raw.hex(' ').upper()}")
    value = Decimal(text).scaleb(-decimals) if decimals else Decimal(text)
    return -value if negative else value


def encode_number(value: Decimal, length: int, digits: int, decimals: int, signed: bool) -> bytes:
    """BCD field of ``length`` bytes holding ``value`` with ``decimals`` places.

    ``digits`` is the number of significant digits the format allows (for
    ``XXX.X`` in two bytes: 4). Raises ``ValueError`` when the value is not
    finite, has more decimals than the format, is negative for an unsigned
    format, or does not fit.
    """
    if not value.is_finite():
        raise ValueError(f"value {value} is not a finite number")
    scaled = value.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"value {value} has more than {decimals} decimal places")
    number = int(scaled)
    negative = number < 0
    if negative:
        if not signed:
            raise ValueError(f"value {value} is negative but the format is unsigned")
        number = -number
    limit = 10**digits
    if signed and digits >= 2 * length:
        # The sign bit takes the top bit of the top digit: it can reach 7 at most.
        limit = 8 * 10 ** (2 * length - 1)
    if number >= limit:
        raise ValueError(
            f"value {value} overflows its format "
            f"({digits} digits, {decimals} decimals{', signed' if signed else ''})"
        )
    raw = bytes.fromhex(f"{number:0{2 * length}d}")[::-1]
    if negative:
        raw = raw[:-1] + bytes((raw[-1] | 0x80,))
    return raw


def int_to_bcd(number: int, length: int) -> bytes:
    """Little-endian packed BCD of a non-negative integer; ``ValueError`` if it does not fit."""
    if number < 0 or number >= 10 ** (2 * length):
        raise ValueError(f"{number} does not fit in {length} BCD bytes")
    return bytes.fromhex(f"{number:0{2 * length}d}")[::-1]


def bcd_to_int(raw: bytes) -> int:
    """Integer value of little-endian packed BCD; ``ValueError`` on a non-BCD nibble."""
    return int(bcd_digits(raw)) if raw else 0
