"""Load-profile records of DL/T 645-2007: random records round-trip exactly, not-measured
fields stay out of the values, and every broken frame part is an error naming its offset."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.dlt645 import (
    FULL_LOAD_RECORD_SIZE,
    LOAD_BLOCKS,
    LoadField,
    LoadRecord,
    RemoteDataError,
    decode_load_profile,
    encode_load_profile,
    encode_load_record,
    split_load_profile,
)


def _values(f: LoadField) -> st.SearchStrategy[Decimal]:
    top = 8 * 10 ** (f.digits - 1) if f.signed else 10**f.digits
    low = -top + 1 if f.signed else 0
    return st.integers(low, top - 1).map(lambda n: Decimal(n).scaleb(-f.decimals))


@st.composite
def records(draw: st.DrawFn, start: datetime | None = None) -> LoadRecord:
    """A record of some blocks, some of their fields measured, some not (FFH)."""
    when = start or draw(st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)))
    blocks = draw(st.frozensets(st.integers(1, len(LOAD_BLOCKS))))
    values: dict[str, Decimal] = {}
    for number in sorted(blocks):
        for f in LOAD_BLOCKS[number - 1]:
            if draw(st.booleans()):
                values[f.name] = draw(_values(f))
    valid = draw(st.booleans()) if not values else True
    return LoadRecord(when.replace(second=0, microsecond=0), values, blocks, valid)


@given(st.lists(records(), max_size=5))
def test_records_roundtrip(recs: list[LoadRecord]) -> None:
    payload = encode_load_profile(recs)
    assert decode_load_profile(payload) == recs
    assert [len(r) for r in split_load_profile(payload)] == [
        len(encode_load_record(r)) for r in recs
    ]
    for raw in split_load_profile(payload):
        assert raw[:2] in (b"\xa0\xa0", b"\xe0\xe0")
        assert raw[-1] == 0xE5
        assert raw[2] == len(raw) - 5
        assert raw[-2] == sum(raw[:-2]) & 0xFF
        assert len(raw) <= FULL_LOAD_RECORD_SIZE


@given(records(), st.data())
def test_any_corrupted_byte_is_an_error_naming_its_offset(
    record: LoadRecord, data: st.DataObject
) -> None:
    payload = bytearray(encode_load_profile([record, record]))
    at = data.draw(st.integers(0, len(payload) - 1))
    payload[at] ^= data.draw(st.integers(1, 255))
    # One changed byte changes the checksum's sum: never the same two records again.
    with pytest.raises(RemoteDataError, match="at payload offset"):
        decode_load_profile(bytes(payload))


def test_a_single_phase_record_has_no_phase_2_or_3_values() -> None:
    start = datetime(2026, 11, 23, 10, 15)
    measured = {
        "voltage_l1_v": Decimal("229.8"),
        "current_l1_a": Decimal("-4.321"),
        "frequency_hz": Decimal("49.98"),
        "power_active_total_kw": Decimal("0.9931"),
        "power_active_l1_kw": Decimal("0.9931"),
        "power_factor_total": Decimal("1.000"),
        "power_factor_l1": Decimal("1.000"),
    }
    payload = encode_load_profile([LoadRecord(start, measured, frozenset({1, 2, 3}))])
    # Block 1: U1, then U2 and U3 all FFH, I1, then I2 and I3 all FFH, frequency.
    assert payload[8:25] == bytes.fromhex("9822 FFFF FFFF 214380 FFFFFF FFFFFF 9849")
    [record] = decode_load_profile(payload)
    assert record.values == measured
    assert record.blocks == {1, 2, 3}


def _damaged(offset: int, byte: int, fix_checksum: bool = True) -> bytes:
    good = LoadRecord(datetime(2026, 11, 23, 10, 15), {"energy_import_total_kwh": Decimal(1)})
    first = encode_load_profile([good])
    raw = bytearray(first + first)
    at = len(first) + offset  # damage the second record
    raw[at] = byte
    if fix_checksum:
        raw[-2] = sum(raw[len(first) : -2]) & 0xFF
    return bytes(raw)


@pytest.mark.parametrize(
    ("offset", "byte", "fix", "message"),
    [
        (0, 0x68, True, "record 1 at payload offset 32: start code 68 A0, expected A0 A0"),
        (8, 0x00, True, "record 1 at payload offset 32: block 1 separator at offset 57 is FF"),
        (2, 0x30, True, "record 1 at payload offset 32: length byte 48 needs 53 bytes, only 32"),
        (2, 0x1A, True, "record 1 at payload offset 32: checksum"),
        (12, 0x00, False, "record 1 at payload offset 32: checksum .* at offset 62, computed"),
        (31, 0x16, True, "record 1 at payload offset 32: end code 16 at offset 63, expected E5"),
        (3, 0x99, True, "record 1 at payload offset 32: time at offset 35: .*minute"),
        (12, 0xA1, True, "energy_import_total_kwh at offset 43: not BCD"),
    ],
)
def test_a_broken_record_names_its_offset(offset: int, byte: int, fix: bool, message: str) -> None:
    with pytest.raises(RemoteDataError, match=message):
        decode_load_profile(_damaged(offset, byte, fix))


def test_a_record_cut_short_or_with_bytes_after_its_last_block() -> None:
    good = encode_load_record(LoadRecord(datetime(2026, 11, 23), {"frequency_hz": Decimal(50)}))
    with pytest.raises(RemoteDataError, match="offset 0: 2 bytes left"):
        decode_load_profile(good[:2])
    longer = bytearray(good[:-2] + b"\x00" + good[-2:])  # one byte more before the checksum
    longer[2] += 1
    longer[-2] = sum(longer[:-2]) & 0xFF
    with pytest.raises(RemoteDataError, match=r"1 bytes after block 6 at offset \d+"):
        decode_load_profile(bytes(longer))


def test_a_record_marked_not_correct_keeps_its_time_but_no_values() -> None:
    at = datetime(2026, 11, 23, 10, 30)
    raw = bytearray(encode_load_record(LoadRecord(at, {"frequency_hz": Decimal("50.00")})))
    raw[0:2] = b"\xe0\xe0"
    raw[-2] = sum(raw[:-2]) & 0xFF
    [record] = decode_load_profile(bytes(raw))
    assert (record.start, record.valid, dict(record.values)) == (at, False, {})


def test_records_in_a_reply_follow_each_other() -> None:
    start = datetime(2026, 11, 23)
    recs = [
        LoadRecord(start + timedelta(minutes=15 * n), {"energy_import_total_kwh": Decimal(n)})
        for n in range(3)
    ]
    assert [r.start for r in decode_load_profile(encode_load_profile(recs))] == [
        r.start for r in recs
    ]
