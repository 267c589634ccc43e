"""Requests and replies: builders, parsers, follow-up frames, errors, freezes, load profile."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.dlt645 import (
    FULL_LOAD_RECORD_SIZE,
    LOAD_FIELDS,
    AddressReply,
    DataReply,
    Decoder,
    ErrorFlags,
    ErrorReply,
    Frame,
    Function1997,
    Function2007,
    LoadRecord,
    LocalProtocolError,
    OtherReply,
    OtherRequest,
    ReadFollowup,
    ReadRequest,
    RemoteDataError,
    Variant,
    WriteRequest,
    ack_reply,
    broadcast_time_request,
    decode_load_profile,
    encode_frame,
    encode_load_profile,
    error_reply,
    freeze_energy_di,
    freeze_time_di,
    guess_variant,
    load_profile_request_extra,
    parse_load_profile_request_extra,
    parse_reply,
    parse_request,
    read_address_reply,
    read_followup_request,
    read_reply,
    read_request,
    write_request,
)
from tests.protocols.dlt645.strategies import ADDRESSES

V07, V97 = Variant.V2007, Variant.V1997
ADDR = "123456789012"


def decode_one(wire: bytes) -> Frame:
    events = Decoder().feed(wire)
    assert len(events) == 1
    assert isinstance(events[0], Frame)
    return events[0]


def test_follow_up_reply_and_followup_request() -> None:
    first = decode_one(read_reply(ADDR, 0x06000001, b"\x01\x02", follow_up=True))
    assert first.control == 0xB1
    assert first.has_follow_up
    assert first.is_reply
    assert not first.is_abnormal
    assert parse_reply(first, V07) == DataReply(0x06000001, b"\x01\x02", True)

    request = decode_one(read_followup_request(ADDR, 0x06000001, 1))
    assert request.control == Function2007.READ_FOLLOWUP
    assert parse_request(request, V07) == ReadFollowup(0x06000001, 1)

    last = decode_one(read_reply(ADDR, 0x06000001, b"\x03", seq=1))
    assert last.control == 0x92
    assert parse_reply(last, V07) == DataReply(0x06000001, b"\x03", False, 1)


def test_1997_follow_up_has_no_sequence_byte() -> None:
    request = decode_one(read_followup_request(ADDR, 0x901F, 5, V97))
    assert request.data == bytes.fromhex("1F90")
    assert parse_request(request, V97) == ReadFollowup(0x901F, 0)
    reply = decode_one(read_reply(ADDR, 0x901F, b"\x00" * 4, V97, follow_up=True))
    assert reply.control == 0xA1
    assert parse_reply(reply, V97) == DataReply(0x901F, b"\x00" * 4, True)


@settings(max_examples=100)
@given(st.integers(0, 0x7F), st.sampled_from([0x11, 0x12, 0x14, 0x01, 0x04]), ADDRESSES)
def test_error_reply_flags_roundtrip(flags: int, function: int, address: str) -> None:
    variant = V97 if function < 0x08 else V07
    frame = decode_one(error_reply(address, function, ErrorFlags(flags), variant))
    assert frame.is_abnormal
    assert frame.is_reply
    assert frame.control == 0xC0 | function
    reply = parse_reply(frame, variant)
    assert reply == ErrorReply(ErrorFlags(flags), function)
    assert isinstance(reply, ErrorReply)
    assert len(reply.names) == bin(flags).count("1")


def test_error_names() -> None:
    reply = ErrorReply(ErrorFlags.NO_DATA | ErrorFlags.UNAUTHORISED | ErrorFlags(0x80))
    assert reply.names == ["NO_DATA", "UNAUTHORISED", "0x80"]


def test_read_address_reply() -> None:
    frame = decode_one(read_address_reply(ADDR))
    assert frame.control == 0x93
    assert parse_reply(frame, V07) == AddressReply(ADDR)


def test_write_request_and_ack() -> None:
    wire = write_request(
        ADDR, 0x04000401, bytes.fromhex("123456789012"), password=b"\x02\x11\x22\x33"
    )
    request = parse_request(decode_one(wire), V07)
    assert request == WriteRequest(
        0x04000401, bytes.fromhex("123456789012"), b"\x02\x11\x22\x33", bytes(4)
    )
    ack = decode_one(ack_reply(ADDR, Function2007.WRITE_DATA))
    assert ack.control == 0x94
    assert parse_reply(ack, V07) == OtherReply(Function2007.WRITE_DATA, b"")
    wire97 = write_request(ADDR, 0xC010, b"\x01\x23\x11\x26", V97)
    assert parse_request(decode_one(wire97), V97) == WriteRequest(
        0xC010, b"\x01\x23\x11\x26", bytes(4), b""
    )


def test_other_function_codes_pass_through() -> None:
    frame = decode_one(encode_frame(ADDR, Function2007.FREEZE, b"\x99\x99\x99\x99"))
    assert parse_request(frame, V07) == OtherRequest(0x16, b"\x99\x99\x99\x99")
    assert parse_reply(decode_one(encode_frame(ADDR, 0x96, b"")), V07) == OtherReply(0x16, b"")


def test_every_function_code_has_its_name() -> None:
    assert [f.value for f in Function2007] == [
        0x08, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B,
    ]  # fmt: skip
    assert [f.value for f in Function1997] == [0x01, 0x02, 0x04, 0x08, 0x0A, 0x0C]


def test_guess_variant_from_function_code() -> None:
    assert guess_variant(Frame(ADDR, 0x01, b""), V07) is V97
    assert guess_variant(Frame(ADDR, 0x91, b""), V97) is V07
    assert guess_variant(Frame(ADDR, 0x08, b""), V97) is V97
    assert guess_variant(Frame(ADDR, 0x08, b""), V07) is V07


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: read_request("12345", 0x00010000), "'12345'"),
        (lambda: read_request("12345678901X", 0x00010000), "12345678901X"),
        (lambda: read_request(ADDR, 1 << 32), "does not fit 4 bytes"),
        (lambda: read_request(ADDR, -1), "does not fit"),
        (lambda: read_request(ADDR, 0x10000, V97), "does not fit 2 bytes"),
        (lambda: read_request(ADDR, 0x06000001, extra=bytes(252)), "256 bytes exceeds 255"),
        (lambda: read_followup_request(ADDR, 0x00010000, 256), "sequence number 256"),
        (lambda: encode_frame(ADDR, 0x100, b""), "control byte 256"),
        (lambda: broadcast_time_request(datetime(2100, 1, 1)), "year 2100"),
        (lambda: write_request(ADDR, 0x04000401, b"", password=b"\x00"), "password"),
        (lambda: error_reply(ADDR, 0x11, ErrorFlags(0x100)), "one byte"),
    ],
)
def test_building_invalid_frames_raises(build: object, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        build()  # type: ignore[operator]


def test_largest_data_is_accepted() -> None:
    wire = read_request(ADDR, 0x06000001, extra=bytes(251))
    assert len(decode_one(wire).data) == 255


def test_parsers_reject_the_wrong_direction_and_short_data() -> None:
    request = decode_one(read_request(ADDR, 0x00010000))
    reply = decode_one(read_reply(ADDR, 0x00010000, bytes(4)))
    with pytest.raises(RemoteDataError, match="not a reply"):
        parse_reply(request, V07)
    with pytest.raises(RemoteDataError, match="not a request"):
        parse_request(reply, V07)
    with pytest.raises(RemoteDataError, match=ADDR):
        parse_reply(decode_one(encode_frame(ADDR, 0x91, b"\x00\x01")), V07)
    with pytest.raises(RemoteDataError, match="sequence byte"):
        parse_reply(decode_one(encode_frame(ADDR, 0x92, b"\x00\x00\x01\x00")), V07)


def test_freeze_dis() -> None:
    assert freeze_time_di(1) == 0x05060001
    assert freeze_energy_di(62) == 0x0506013E
    assert freeze_time_di(1, hourly=True) == 0x05040001
    assert freeze_energy_di(254, hourly=True) == 0x050401FE
    assert freeze_energy_di(1, export=True) == 0x05060201
    assert freeze_energy_di(62, export=True) == 0x0506023E
    with pytest.raises(LocalProtocolError, match="hourly freezes of export"):
        freeze_energy_di(1, hourly=True, export=True)
    with pytest.raises(LocalProtocolError, match="daily freeze number 63"):
        freeze_time_di(63)
    with pytest.raises(LocalProtocolError, match="hourly freeze number 0"):
        freeze_energy_di(0, hourly=True)


def test_load_profile_request() -> None:
    start = datetime(2026, 11, 23, 10, 15)
    extra = load_profile_request_extra(16, start)
    assert extra == bytes.fromhex("16 15 10 23 11 26")  # NN mm hh DD MM YY
    request = parse_request(decode_one(read_request(ADDR, 0x06000001, extra=extra)), V07)
    assert request == ReadRequest(0x06000001, extra)
    assert parse_load_profile_request_extra(extra) == (16, start)
    with pytest.raises(LocalProtocolError, match="count 100"):
        load_profile_request_extra(100, start)


def test_load_profile_record_layout() -> None:
    # A record of blocks 2 (powers) and 4 (energies): blocks 1, 3, 5 and 6 are empty,
    # the fields of blocks 2 and 4 without a value are not measured (FFH).
    record = LoadRecord(
        datetime(2026, 11, 23, 10, 15),
        {"energy_import_total_kwh": Decimal("123456.78"), "power_active_total_kw": Decimal("-1.5")},
    )
    assert record.blocks == {2, 4}
    payload = encode_load_profile([record])
    ff3, ff4 = "FF FF FF ", "FF FF FF FF "
    body = "15 10 23 11 26 AA " + "00 50 81 " + ff3 * 7 + "AA AA " + "78 56 34 12 " + ff4 * 3
    body += "AA AA AA"
    raw = bytes.fromhex(body)
    head = bytes.fromhex(f"A0 A0 {len(raw):02X}")
    assert payload == head + raw + bytes(((sum(head) + sum(raw)) & 0xFF, 0xE5))
    assert len(payload) == 56
    assert decode_load_profile(payload) == [record]
    with pytest.raises(RemoteDataError, match="offset 0: length byte 51 needs 56 bytes, only 55"):
        decode_load_profile(payload[:-1])
    with pytest.raises(LocalProtocolError, match=r"values \['voltage_l1_v'\] are not fields"):
        encode_load_profile([LoadRecord(record.start, {"voltage_l1_v": Decimal(1)}, {2})])


def test_a_full_load_record_is_103_bytes_and_one_fills_a_reply() -> None:
    values = {name: Decimal(0) for name in LOAD_FIELDS}
    record = LoadRecord(datetime(2026, 11, 23, 0, 15), values)
    payload = encode_load_profile([record])
    assert len(payload) == FULL_LOAD_RECORD_SIZE == 103
    assert payload[2] == 98  # the length: record time through the last AAH
    reply = parse_reply(decode_one(read_reply(ADDR, 0x06000001, payload)), V07)
    assert isinstance(reply, DataReply)
    assert decode_load_profile(reply.payload) == [record]
    assert 4 + 2 * FULL_LOAD_RECORD_SIZE > 200  # two do not fit one frame
