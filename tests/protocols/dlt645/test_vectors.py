"""The hand-checked test vectors of protocol-notes.md, in both directions.

Each vector is built with the public builders (bytes must match exactly) and
decoded from bytes fed once whole and once one byte at a time (with and
without the FE wake-up preamble); the decoded frame and its meaning must match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import pytest

from protocols.dlt645 import (
    WAKEUP,
    BroadcastTime,
    DataReply,
    Decoder,
    ErrorFlags,
    ErrorReply,
    Frame,
    ReadAddress,
    ReadRequest,
    Reply,
    Request,
    Value,
    Variant,
    broadcast_time_request,
    decode_payload,
    encode_payload,
    error_reply,
    parse_reply,
    parse_request,
    read_address_request,
    read_reply,
    read_request,
)


@dataclass(frozen=True)
class Vector:
    name: str
    hex: str
    build: Callable[[], bytes]
    frame: Frame
    variant: Variant
    message: Request | Reply
    values: tuple[Value, ...] = ()

    @property
    def wire(self) -> bytes:
        return bytes.fromhex(self.hex)


V07 = Variant.V2007
D = Decimal

VECTORS = [
    Vector(
        "read 00010000 from 000000000001",
        "68 01 00 00 00 00 00 68 11 04 33 33 34 33 B3 16",
        lambda: read_request("000000000001", 0x00010000),
        Frame("000000000001", 0x11, bytes.fromhex("00000100")),
        V07,
        ReadRequest(0x00010000, b""),
    ),
    Vector(
        "reply 123456.78 kWh",
        "68 01 00 00 00 00 00 68 91 08 33 33 34 33 AB 89 67 45 17 16",
        lambda: read_reply(
            "000000000001", 0x00010000, encode_payload(0x00010000, [D("123456.78")])
        ),
        Frame("000000000001", 0x91, bytes.fromhex("00000100 78563412")),
        V07,
        DataReply(0x00010000, bytes.fromhex("78563412"), False),
        (Value("energy_import_total_kwh", D("123456.78"), "kWh", 0x00010000),),
    ),
    Vector(
        "read 00010000 from 123456789012",
        "68 12 90 78 56 34 12 68 11 04 33 33 34 33 68 16",
        lambda: read_request("123456789012", 0x00010000),
        Frame("123456789012", 0x11, bytes.fromhex("00000100")),
        V07,
        ReadRequest(0x00010000, b""),
    ),
    Vector(
        "abnormal reply, no data requested",
        "68 12 90 78 56 34 12 68 D1 01 35 8D 16",
        lambda: error_reply("123456789012", 0x11, ErrorFlags.NO_DATA),
        Frame("123456789012", 0xD1, b"\x02"),
        V07,
        ErrorReply(ErrorFlags.NO_DATA, 0x11),
    ),
    Vector(
        "read address (wildcard)",
        "68 AA AA AA AA AA AA 68 13 00 DF 16",
        read_address_request,
        Frame("AAAAAAAAAAAA", 0x13, b""),
        V07,
        ReadAddress(),
    ),
    Vector(
        "reply voltage A 220.1 V",
        "68 01 00 00 00 00 00 68 91 06 33 34 34 35 34 55 C1 16",
        lambda: read_reply("000000000001", 0x02010100, encode_payload(0x02010100, [D("220.1")])),
        Frame("000000000001", 0x91, bytes.fromhex("00010102 0122")),
        V07,
        DataReply(0x02010100, bytes.fromhex("0122"), False),
        (Value("voltage_l1_v", D("220.1"), "V", 0x02010100),),
    ),
    Vector(
        "reply current A -1.234 A",
        "68 01 00 00 00 00 00 68 91 07 33 34 35 35 67 45 B3 99 16",
        lambda: read_reply("000000000001", 0x02020100, encode_payload(0x02020100, [D("-1.234")])),
        Frame("000000000001", 0x91, bytes.fromhex("00010202 341280")),
        V07,
        DataReply(0x02020100, bytes.fromhex("341280"), False),
        (Value("current_l1_a", D("-1.234"), "A", 0x02020100),),
    ),
    Vector(
        "broadcast time 2026-11-23 10:20:30",
        "68 99 99 99 99 99 99 68 08 06 63 53 43 56 44 59 60 16",
        lambda: broadcast_time_request(datetime(2026, 11, 23, 10, 20, 30)),
        Frame("999999999999", 0x08, bytes.fromhex("302010231126")),
        V07,
        BroadcastTime(datetime(2026, 11, 23, 10, 20, 30)),
    ),
    Vector(
        "1997: read B611 from 000000000003",
        "68 03 00 00 00 00 00 68 01 02 44 E9 03 16",
        lambda: read_request("000000000003", 0xB611, Variant.V1997),
        Frame("000000000003", 0x01, bytes.fromhex("11B6")),
        Variant.V1997,
        ReadRequest(0xB611, b""),
    ),
]

IDS = [v.name for v in VECTORS]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_checksum_of_vector_is_right(vector: Vector) -> None:
    wire = vector.wire
    assert sum(wire[:-2]) & 0xFF == wire[-2]
    assert len(wire) == 12 + wire[9]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_build_gives_vector_bytes(vector: Vector) -> None:
    assert vector.build().hex(" ").upper() == vector.hex


def _whole(data: bytes) -> list[object]:
    decoder = Decoder()
    events: list[object] = [*decoder.feed(data)]
    assert decoder.buffered == 0
    return events


def _bytewise(data: bytes) -> list[object]:
    decoder = Decoder()
    events: list[object] = []
    for i in range(len(data)):
        events += decoder.feed(data[i : i + 1])
    assert decoder.buffered == 0
    return events


@pytest.mark.parametrize("feed", [_whole, _bytewise], ids=["whole", "bytewise"])
@pytest.mark.parametrize("preamble", [b"", WAKEUP, b"\xfe"], ids=["bare", "FEx4", "FEx1"])
@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_decode_vector(
    vector: Vector, preamble: bytes, feed: Callable[[bytes], list[object]]
) -> None:
    events = feed(preamble + vector.wire)
    assert events == [vector.frame]
    frame = vector.frame
    if frame.is_reply:
        reply = parse_reply(frame, vector.variant)
        assert reply == vector.message
        if isinstance(reply, DataReply):
            values = decode_payload(reply.di, reply.payload, vector.variant)
            assert values == list(vector.values)
            # Exact decimals: the scale survives, not only the numeric value.
            assert [str(v.value) for v in values] == [str(v.value) for v in vector.values]
    else:
        assert parse_request(frame, vector.variant) == vector.message


def test_all_vectors_glued_in_one_stream() -> None:
    stream = b"".join(WAKEUP + v.wire for v in VECTORS)
    assert _whole(stream) == [v.frame for v in VECTORS]
    assert _bytewise(stream) == [v.frame for v in VECTORS]
