"""Byte-level encodings: addresses, BCD numbers and their bounds on both sides.

Expected bytes come from the test vectors of protocol-notes.md (meter
123456789012 is sent ``12 90 78 56 34 12``; 123456.78 kWh is ``78 56 34 12``;
220.1 V is ``01 22``; -1.234 A is ``34 12 80``) or follow from the format rule
they illustrate: packed BCD, least significant byte first, the sign in the top
bit of the most significant byte.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.dlt645 import bcd
from protocols.dlt645.bcd import (
    ADD_33,
    SUB_33,
    address_from_bytes,
    address_to_bytes,
    bcd_digits,
    bcd_to_int,
    decode_number,
    encode_number,
    int_to_bcd,
)

D = Decimal


def test_offset_tables_add_and_remove_0x33_modulo_256() -> None:
    # From the vectors: DI 00 00 01 00 is sent 33 33 34 33; 0xCD + 0x33 wraps to 00.
    assert bytes.fromhex("00000100").translate(ADD_33) == bytes.fromhex("33333433")
    assert bytes.fromhex("33333433").translate(SUB_33) == bytes.fromhex("00000100")
    assert b"\xcd\xff".translate(ADD_33) == b"\x00\x32"
    assert bytes(range(256)).translate(ADD_33).translate(SUB_33) == bytes(range(256))


# --- addresses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "wire"),
    [
        ("123456789012", "12 90 78 56 34 12"),
        ("000000000001", "01 00 00 00 00 00"),
        ("AAAAAAAAAAAA", "AA AA AA AA AA AA"),
        ("aaaaaaaaaaaa", "AA AA AA AA AA AA"),  # the wildcard digit in either case
        ("999999999999", "99 99 99 99 99 99"),
        ("0123456789AA", "AA 89 67 45 23 01"),  # every allowed digit at once
    ],
)
def test_address_to_bytes(address: str, wire: str) -> None:
    assert address_to_bytes(address) == bytes.fromhex(wire)


@pytest.mark.parametrize(
    "address",
    ["12345678901", "1234567890123", "", "12345678901B", "12345678901 ", "1234567890-1"],
    ids=["11 digits", "13 digits", "empty", "hex digit B", "space", "minus"],
)
def test_malformed_address_is_refused_naming_it(address: str) -> None:
    message = f"meter address {address!r} must be 12 digits 0-9 (or the wildcard digit A)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        address_to_bytes(address)


@pytest.mark.parametrize(
    ("wire", "address"),
    [
        ("12 90 78 56 34 12", "123456789012"),
        ("aa aa aa aa aa aa", "AAAAAAAAAAAA"),
        # Not BCD: still readable, as its hex digits in upper case.
        ("1f 00 00 00 00 e0", "E0000000001F"),
    ],
)
def test_address_from_bytes(wire: str, address: str) -> None:
    raw = bytes.fromhex(wire)
    assert address_from_bytes(raw) == address
    assert address_from_bytes(raw) == address  # the second time from the cache


def test_address_cache_stays_bounded() -> None:
    # A noisy line can show endless distinct addresses; the cache must not grow with them.
    for i in range(bcd._ADDRESS_CACHE_MAX + 10):
        raw = int_to_bcd(i, 6)
        assert address_from_bytes(raw) == f"{i:012d}"
        assert len(bcd._address_cache) <= bcd._ADDRESS_CACHE_MAX
    # Full means full: the cache keeps what it can hold before it starts over.
    bcd._address_cache.clear()
    for i in range(bcd._ADDRESS_CACHE_MAX):
        address_from_bytes(int_to_bcd(i, 6))
    assert len(bcd._address_cache) == bcd._ADDRESS_CACHE_MAX
    address_from_bytes(int_to_bcd(bcd._ADDRESS_CACHE_MAX, 6))
    assert len(bcd._address_cache) == 1


@given(st.text(alphabet="0123456789A", min_size=12, max_size=12))
def test_address_roundtrip(address: str) -> None:
    assert address_from_bytes(address_to_bytes(address)) == address


# --- plain BCD integers ------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "length", "wire"),
    [
        (0, 1, "00"),
        (99, 1, "99"),  # the largest in one byte
        (1234, 2, "34 12"),
        (9999, 2, "99 99"),
        (123456789012, 6, "12 90 78 56 34 12"),
    ],
)
def test_int_to_bcd_and_back(number: int, length: int, wire: str) -> None:
    assert int_to_bcd(number, length) == bytes.fromhex(wire)
    assert bcd_to_int(bytes.fromhex(wire)) == number


@pytest.mark.parametrize(("number", "length"), [(-1, 1), (100, 1), (10000, 2), (-1, 2)])
def test_int_to_bcd_refuses_what_does_not_fit(number: int, length: int) -> None:
    message = f"{number} does not fit in {length} BCD bytes"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        int_to_bcd(number, length)


def test_bcd_digits_keeps_leading_zeros() -> None:
    assert bcd_digits(bytes.fromhex("34 12 00")) == "001234"
    assert bcd_digits(bytes.fromhex("09")) == "09"


@pytest.mark.parametrize("wire", ["1A", "34 F2", "A0"])
def test_non_bcd_nibble_is_refused(wire: str) -> None:
    raw = bytes.fromhex(wire)
    message = f"not BCD: {wire}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        bcd_digits(raw)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        bcd_to_int(raw)


def test_bcd_to_int_of_no_bytes_is_zero() -> None:
    assert bcd_to_int(b"") == 0


# --- numbers with implied decimals and a sign --------------------------------


@pytest.mark.parametrize(
    ("wire", "decimals", "signed", "text"),
    [
        ("78 56 34 12", 2, False, "123456.78"),  # vector: 123456.78 kWh
        ("01 22", 1, False, "220.1"),  # vector: voltage A
        ("34 12 80", 3, True, "-1.234"),  # vector: current A
        ("34 12 00", 3, True, "1.234"),
        ("00 00 00 00", 2, False, "0.00"),  # the scale is kept
        ("34 12", 0, False, "1234"),
        ("00 01", 0, True, "100"),  # 01 has no sign bit: positive
        ("00 81", 0, True, "-100"),  # sign bit and digit 1 in the top byte
        ("99 F9", 1, True, "-799.9"),
        ("00 80", 0, False, "8000"),  # unsigned: 8 is a digit, not a sign
        ("00 80", 0, True, "0"),
    ],
)
def test_decode_number(wire: str, decimals: int, signed: bool, text: str) -> None:
    value = decode_number(bytes.fromhex(wire), decimals, signed)
    assert str(value) == text


@pytest.mark.parametrize(
    ("wire", "signed", "shown"),
    [("1A", False, "1A"), ("34 9A", True, "34 1A"), ("", True, ""), ("", False, "")],
)
def test_decode_number_refuses_non_bcd(wire: str, signed: bool, shown: str) -> None:
    # The message shows the digits once the sign bit is taken off.
    message = f"not BCD: {shown}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        decode_number(bytes.fromhex(wire), 2, signed)


@pytest.mark.parametrize(
    ("value", "length", "digits", "decimals", "signed", "wire"),
    [
        ("123456.78", 4, 8, 2, False, "78 56 34 12"),  # vector
        ("220.1", 2, 4, 1, False, "01 22"),  # vector
        ("-1.234", 3, 6, 3, True, "34 12 80"),  # vector
        ("1.234", 3, 6, 3, True, "34 12 00"),
        ("0", 2, 4, 1, False, "00 00"),
        ("-0", 2, 4, 1, True, "00 00"),  # no negative zero on the wire
        ("999.9", 2, 4, 1, False, "99 99"),  # the largest XXX.X
        ("799.999", 3, 6, 3, True, "99 99 79"),  # the largest signed XXX.XXX
        ("-799.999", 3, 6, 3, True, "99 99 F9"),
        ("9999", 3, 4, 0, True, "99 99 00"),  # fewer digits than the field: no sign limit
        ("-9999", 3, 4, 0, True, "99 99 80"),
        ("220.10", 2, 4, 1, False, "01 22"),  # trailing zeros are not extra decimals
        ("2.2E+2", 2, 4, 1, False, "00 22"),
    ],
)
def test_encode_number(
    value: str, length: int, digits: int, decimals: int, signed: bool, wire: str
) -> None:
    raw = encode_number(D(value), length, digits, decimals, signed)
    assert raw.hex(" ").upper() == wire
    assert decode_number(raw, decimals, signed) == D(value)


@pytest.mark.parametrize(
    ("value", "length", "digits", "decimals", "signed", "message"),
    [
        ("1000.0", 2, 4, 1, False, "value 1000.0 overflows its format (4 digits, 1 decimals)"),
        (
            "800.000",
            3,
            6,
            3,
            True,
            "value 800.000 overflows its format (6 digits, 3 decimals, signed)",
        ),
        ("-800", 3, 6, 3, True, "value -800 overflows its format (6 digits, 3 decimals, signed)"),
        ("10000", 3, 4, 0, True, "value 10000 overflows its format (4 digits, 0 decimals, signed)"),
        ("220.11", 2, 4, 1, False, "value 220.11 has more than 1 decimal places"),
        ("0.5", 2, 4, 0, False, "value 0.5 has more than 0 decimal places"),
        ("-1", 2, 4, 1, False, "value -1 is negative but the format is unsigned"),
        ("-0.1", 2, 4, 1, False, "value -0.1 is negative but the format is unsigned"),
        ("NaN", 2, 4, 1, False, "value NaN is not a finite number"),
        ("Infinity", 2, 4, 1, True, "value Infinity is not a finite number"),
        ("-Infinity", 2, 4, 1, True, "value -Infinity is not a finite number"),
    ],
)
def test_encode_number_refuses(
    value: str, length: int, digits: int, decimals: int, signed: bool, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        encode_number(D(value), length, digits, decimals, signed)


@given(st.integers(-799_999, 799_999))
def test_signed_field_roundtrip(number: int) -> None:
    value = D(number).scaleb(-3)
    raw = encode_number(value, 3, 6, 3, True)
    assert len(raw) == 3
    assert decode_number(raw, 3, True) == value
    assert bool(raw[-1] & 0x80) == (number < 0)


@given(st.integers(0, 99_999_999))
def test_unsigned_field_roundtrip(number: int) -> None:
    value = D(number).scaleb(-2)
    raw = encode_number(value, 4, 8, 2, False)
    assert raw == int_to_bcd(number, 4)
    assert decode_number(raw, 2, False) == value
