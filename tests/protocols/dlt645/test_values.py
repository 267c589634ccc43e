"""The DI registry and payload values: every DI round-trips through a frame exactly."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.dlt645 import (
    REGISTRY,
    DataItem,
    DataKindError,
    DataReply,
    Decoder,
    Frame,
    LoadRecord,
    LocalProtocolError,
    RemoteDataError,
    UnknownDataId,
    Variant,
    decode_address,
    decode_datetime,
    decode_load_profile,
    decode_payload,
    encode_address,
    encode_datetime,
    encode_load_profile,
    encode_payload,
    lookup,
    parse_reply,
    read_reply,
)
from protocols.quantities import QUANTITIES
from tests.protocols.dlt645.strategies import ADDRESSES

V07, V97 = Variant.V2007, Variant.V1997
D = Decimal
NUMERIC = ("value", "status", "block", "freeze_energy")
CLOCKS = ("date", "time", "datetime", "freeze_time")
ALL_ITEMS = sorted(REGISTRY.values(), key=lambda i: (i.variant, i.di))


def _members(item: DataItem) -> list[DataItem]:
    if item.kind in ("value", "status"):
        return [item]
    return [lookup(m, item.variant) for m in item.members]


def _random_value(rng: random.Random, item: DataItem) -> Decimal:
    if item.kind == "status":
        return D(rng.randrange(0x10000))
    limit = 10**item.digits
    if item.signed and item.digits >= 2 * item.length:
        limit = 8 * 10 ** (2 * item.length - 1)
    magnitude = rng.choice([0, limit - 1, rng.randrange(limit)])
    negative = item.signed and rng.random() < 0.5
    return D(-magnitude if negative else magnitude).scaleb(-item.decimals)


def _random_time(rng: random.Random, kind: str) -> datetime:
    when = datetime(2000, 1, 1) + timedelta(seconds=rng.randrange(100 * 365 * 86400))
    if kind == "date":
        return when.replace(hour=0, minute=0, second=0)
    if kind == "time":
        return when.replace(year=1900, month=1, day=1)
    if kind == "freeze_time":
        return when.replace(second=0)
    return when


def _through_frame(address: str, item: DataItem, payload: bytes) -> bytes:
    """Send ``payload`` as a read reply and decode it again; return the payload."""
    (frame,) = Decoder().feed(read_reply(address, item.di, payload, item.variant))
    assert isinstance(frame, Frame)
    assert frame.address == address
    reply = parse_reply(frame, item.variant)
    assert isinstance(reply, DataReply)
    assert reply.di == item.di
    return reply.payload


def _roundtrip(rng: random.Random, address: str, item: DataItem) -> None:
    if item.kind in NUMERIC:
        values = [_random_value(rng, m) for m in _members(item)]
        payload = _through_frame(address, item, encode_payload(item.di, values, item.variant))
        decoded = decode_payload(item.di, payload, item.variant)
        assert [v.value for v in decoded] == values
        assert [str(v.value) for v in decoded] == [str(v) for v in values]
        assert [v.key for v in decoded] == [m.key for m in _members(item)]
        assert [v.di for v in decoded] == [m.di for m in _members(item)]
    elif item.kind in CLOCKS:
        when = _random_time(rng, item.kind)
        payload = _through_frame(address, item, encode_datetime(item.di, when, item.variant))
        assert decode_datetime(item.di, payload, item.variant) == when
    elif item.kind == "address":
        payload = _through_frame(address, item, encode_address(address))
        assert decode_address(payload) == address
    else:
        assert item.kind == "load_profile"
        start = _random_time(rng, "freeze_time")
        records = [
            LoadRecord(
                start + timedelta(minutes=15 * n),
                {
                    "energy_import_total_kwh": D(rng.randrange(10**8)).scaleb(-2),
                    "power_active_total_kw": D(rng.randrange(-799999, 800000)).scaleb(-4),
                },
            )
            for n in range(rng.randrange(1, 4))  # 56-byte records (blocks 2 and 4)
        ]
        payload = _through_frame(address, item, encode_load_profile(records))
        assert decode_load_profile(payload) == records


@pytest.mark.parametrize("item", ALL_ITEMS, ids=[f"{i.variant}-{i.di:08X}" for i in ALL_ITEMS])
def test_every_registry_di_roundtrips(item: DataItem) -> None:
    rng = random.Random(f"{item.variant}{item.di}")
    for _ in range(3):
        address = "".join(rng.choice("0123456789") for _ in range(12))
        _roundtrip(rng, address, item)


@settings(max_examples=200)
@given(st.sampled_from(ALL_ITEMS), ADDRESSES, st.randoms(use_true_random=False))
def test_random_registry_di_roundtrips(item: DataItem, address: str, rng: random.Random) -> None:
    _roundtrip(rng, address, item)


def test_keys_and_units_agree_with_quantity_registry() -> None:
    for item in ALL_ITEMS:
        if item.key is not None:
            assert item.key in QUANTITIES, item
            assert item.unit == QUANTITIES[item.key].unit, item


def test_registry_covers_the_protocol_notes() -> None:
    expected_2007 = {
        0x00000000: "energy_combined_total_kwh",
        0x00010000: "energy_import_total_kwh",
        0x00010100: "energy_import_t1_kwh",
        0x00010400: "energy_import_t4_kwh",
        0x00020000: "energy_export_total_kwh",
        0x00020300: "energy_export_t3_kwh",
        0x02010100: "voltage_l1_v",
        0x02010300: "voltage_l3_v",
        0x02020200: "current_l2_a",
        0x02030000: "power_active_total_kw",
        0x02030300: "power_active_l3_kw",
        0x02060000: "power_factor_total",
        0x02060100: "power_factor_l1",
        0x02800002: "frequency_hz",
        0x04000501: "status_word_1",
        0x04000507: "status_word_7",
    }
    for di, key in expected_2007.items():
        assert lookup(di).key == key
    kinds = {
        0x0001FF00: "block",
        0x0201FF00: "block",
        0x0202FF00: "block",
        0x04000101: "date",
        0x04000102: "time",
        0x04000401: "address",
        0x05060001: "freeze_time",
        0x0506013E: "freeze_energy",
        0x05040001: "freeze_time",
        0x050401FE: "freeze_energy",
        0x06000001: "load_profile",
    }
    for di, kind in kinds.items():
        assert lookup(di).kind == kind
    assert lookup(0x0001FF00).members == (
        0x00010000,
        0x00010100,
        0x00010200,
        0x00010300,
        0x00010400,
    )
    expected_1997 = {
        0x9010: "energy_import_total_kwh",
        0x9014: "energy_import_t4_kwh",
        0x9020: "energy_export_total_kwh",
        0xB611: "voltage_l1_v",
        0xB613: "voltage_l3_v",
        0xB621: "current_l1_a",
        0xB630: "power_active_total_kw",
    }
    for di, key in expected_1997.items():
        assert lookup(di, V97).key == key
    assert lookup(0x901F, V97).kind == "block"
    assert lookup(0xC010, V97).kind == "date"
    assert lookup(0xC011, V97).kind == "time"


def test_formats_of_the_notes() -> None:
    # (DI, payload bytes, value) straight from the format column of the notes.
    cases = [
        (0x00000000, "00 00 00 00", "0.00"),
        (0x02010200, "99 09", "99.9"),
        (0x02020300, "00 00 80", "0.000"),  # a sign on zero is dropped
        (0x02030000, "56 34 92", "-12.3456"),
        (0x02060000, "99 09", "0.999"),
        (0x02060100, "00 90", "-1.000"),
        (0x02800002, "00 50", "50.00"),
    ]
    for di, raw, text in cases:
        (value,) = decode_payload(di, bytes.fromhex(raw))
        assert str(value.value) == text
    (volts,) = decode_payload(0xB611, bytes.fromhex("20 02"), V97)
    assert str(volts.value) == "220"
    (amps,) = decode_payload(0xB621, bytes.fromhex("34 12"), V97)
    assert str(amps.value) == "12.34"


def test_block_with_fewer_or_more_tariffs() -> None:
    two_tariffs = encode_payload(0x0001FF00, [D("3.00"), D("1.00"), D("2.00")])
    assert len(two_tariffs) == 12
    values = decode_payload(0x0001FF00, two_tariffs)
    assert [v.key for v in values] == [
        "energy_import_total_kwh",
        "energy_import_t1_kwh",
        "energy_import_t2_kwh",
    ]
    six_tariffs = two_tariffs + bytes(16)
    assert len(decode_payload(0x0001FF00, six_tariffs)) == 5


def test_status_word_block() -> None:
    payload = b"".join(n.to_bytes(2, "little") for n in (1, 2, 4, 8, 0x10, 0x20, 0x8000))
    values = decode_payload(0x040005FF, payload)
    assert [v.key for v in values] == [f"status_word_{n}" for n in range(1, 8)]
    assert [int(v.value) for v in values] == [1, 2, 4, 8, 0x10, 0x20, 0x8000]


@pytest.mark.parametrize(
    ("di", "value", "message"),
    [
        (0x02010100, "1000.0", "overflows"),
        (0x02010100, "220.15", "decimal places"),
        (0x02010100, "-1.0", "negative"),
        (0x02020100, "800.000", "overflows"),
        (0x00010000, "1000000.00", "overflows"),
        (0x00010000, "NaN", "finite"),
        (0x04000501, "65536", "status word"),
    ],
)
def test_value_overflowing_its_format_raises(di: int, value: str, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message) as info:
        encode_payload(di, [D(value)])
    assert f"{di:08X}" in str(info.value)


def test_floats_are_refused() -> None:
    with pytest.raises(LocalProtocolError, match="float"):
        encode_payload(0x00010000, [1.5])  # type: ignore[list-item]


def test_signed_extremes_fit() -> None:
    payload = encode_payload(0x02020100, [D("-799.999")])
    assert payload == bytes.fromhex("99 99 F9")
    assert decode_payload(0x02020100, payload)[0].value == D("-799.999")


def test_wrong_value_count_raises() -> None:
    with pytest.raises(LocalProtocolError, match="0001FF00"):
        encode_payload(0x0001FF00, [D(1)] * 6)
    with pytest.raises(LocalProtocolError, match="one value"):
        encode_payload(0x00010000, [D(1), D(2)])


def test_malformed_payloads_raise_remote_data_error_naming_the_di() -> None:
    with pytest.raises(RemoteDataError, match=r"00010000.*5 bytes"):
        decode_payload(0x00010000, bytes(5))
    with pytest.raises(RemoteDataError, match=r"00010000.*not BCD"):
        decode_payload(0x00010000, bytes.fromhex("7A 56 34 12"))
    with pytest.raises(RemoteDataError, match="0001FF00"):
        decode_payload(0x0001FF00, bytes(6))
    with pytest.raises(RemoteDataError, match="0001FF00"):
        decode_payload(0x0001FF00, b"")
    with pytest.raises(RemoteDataError, match="04000101"):
        decode_datetime(0x04000101, bytes.fromhex("01 32 01 26"))  # 32nd of January
    with pytest.raises(RemoteDataError, match="not a 6-byte BCD"):
        decode_address(bytes.fromhex("AA AA AA AA AA AA"))


def test_unknown_and_wrong_kind_dis_are_named() -> None:
    with pytest.raises(UnknownDataId, match="0A0B0C0D"):
        decode_payload(0x0A0B0C0D, bytes(4))
    with pytest.raises(UnknownDataId, match="9999"):
        lookup(0x9999, V97)
    with pytest.raises(DataKindError, match="decode_datetime"):
        decode_payload(0x04000101, bytes(4))
    with pytest.raises(DataKindError, match="decode_load_profile"):
        decode_payload(0x06000001, bytes(12))
    with pytest.raises(DataKindError, match="not a date"):
        decode_datetime(0x00010000, bytes(4))


def test_dates_on_the_wire() -> None:
    # 2026-11-23 is a Monday: weekday 1 (0 = Sunday).
    assert encode_datetime(0x04000101, datetime(2026, 11, 23)) == bytes.fromhex("01 23 11 26")
    assert encode_datetime(0x04000102, datetime(1900, 1, 1, 10, 20, 30)) == bytes.fromhex(
        "30 20 10"
    )
    freeze = bytes.fromhex("00 00 23 11 26")  # YYMMDDhhmm 2611230000, minute first
    assert decode_datetime(0x05060001, freeze) == datetime(2026, 11, 23)
    assert decode_datetime(0xC011, bytes.fromhex("59 59 23")) == datetime(1900, 1, 1, 23, 59, 59)
    with pytest.raises(LocalProtocolError, match="year 1999"):
        encode_datetime(0x04000101, datetime(1999, 12, 31))
