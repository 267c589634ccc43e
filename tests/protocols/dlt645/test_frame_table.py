"""Framing edge cases as a table: bytes in, events out of ``feed()``, bytes held, events
out of ``flush()``; each fed whole and one byte at a time.

The rules under test are the resynchronisation rules in the docstring of
``protocols/dlt645/frame.py``; every expectation is reasoned from them and from
the frame layout, and each case says why. The crafted frames are in crafted.py.
"""

from __future__ import annotations

import pytest

from protocols.dlt645 import (
    BAD_CHECKSUM,
    BAD_END,
    GARBAGE,
    GARBAGE_NO_START,
    TRUNCATED,
    Decoder,
    Discarded,
    Frame,
)
from protocols.dlt645.bcd import SUB_33
from tests.protocols.dlt645.crafted import (
    ADDR,
    BAD_END_CS_16,
    BAD_END_REPLY,
    BAD_READ_ADDRESS,
    BAD_REPLY,
    CS_0B,
    CS_LIKE_ADDRESS,
    CS_LIKE_DATA,
    CS_OF_TWO_BYTES,
    CS_WITHOUT_LAST_DATA,
    LENGTH_IN_DATA,
    NO_SECOND_START,
    READ_ADDRESS,
    READ_ADDRESS_FRAME,
    REPLY,
    REPLY_FRAME,
    SHIFTED,
    SHORT_CS_00,
    SHORT_CS_FF,
    WAITS_AT_1,
    WAITS_AT_8,
    wire,
)
from tests.protocols.dlt645.feeding import Event, whole


def test_vectors_used_here_are_what_they_claim() -> None:
    assert whole(REPLY) == [REPLY_FRAME]
    assert whole(READ_ADDRESS) == [READ_ADDRESS_FRAME]
    assert wire(ADDR, 0x91, REPLY[10:18]) == REPLY
    assert wire(bytes.fromhex("AA") * 6, 0x13, b"") == READ_ADDRESS


CASES: list[tuple[str, bytes, list[Event], int, list[Event]]] = [
    # A 68 whose seventh byte on is not 68 cannot start a frame.
    (
        "lone start byte then good frame",
        b"\x68" + REPLY,
        [Discarded(GARBAGE, b"\x68"), REPLY_FRAME],
        0,
        [],
    ),
    (
        "two lone start bytes then a 12-byte frame",
        b"\x68\x68" + READ_ADDRESS,
        [Discarded(GARBAGE, b"\x68\x68"), READ_ADDRESS_FRAME],
        0,
        [],
    ),
    (
        # Meter 680000000001: the lone 68 sees a header (68 seven bytes on)
        # claiming 0x91 data bytes; the good frame already there comes out.
        "lone start byte with a plausible header then good frame",
        b"\x68" + wire(bytes.fromhex("01 00 00 00 00 68"), 0x91, b"\x33"),
        [Discarded(TRUNCATED, b"\x68"), Frame("680000000001", 0x91, b"\x00")],
        0,
        [],
    ),
    (
        # Same, but the lone 68 claims 1 data byte: its 13-byte "frame" is
        # complete and bad; the good frame inside it is still found.
        "lone start byte with a complete bad frame around a good one",
        b"\x68" + wire(bytes.fromhex("01 00 00 00 00 68"), 0x01, b"\x44\xe9"),
        [Discarded(TRUNCATED, b"\x68"), Frame("680000000001", 0x01, bytes.fromhex("11 B6"))],
        0,
        [],
    ),
    # The second 68 of a bad frame is resolved (not a start): reported at once.
    ("bad checksum", BAD_REPLY, [Discarded(BAD_CHECKSUM, BAD_REPLY)], 0, []),
    ("bad end byte", BAD_END_REPLY, [Discarded(BAD_END, BAD_END_REPLY)], 0, []),
    (
        # Only starts inside the bad frame can hold its report back.
        "bad checksum then a partial header",
        BAD_REPLY + b"\x68\x01\x00",
        [Discarded(BAD_CHECKSUM, BAD_REPLY)],
        3,
        [Discarded(TRUNCATED, b"\x68\x01\x00")],
    ),
    (
        # Its second 68 has 4 bytes after it: it may still start a frame.
        "short bad frame waits for its inner 68",
        BAD_READ_ADDRESS,
        [],
        12,
        [Discarded(BAD_CHECKSUM, BAD_READ_ADDRESS)],
    ),
    (
        # Three more bytes give that 68 its seventh byte on (00): no start.
        "short bad frame reported once its inner 68 is resolved",
        BAD_READ_ADDRESS + b"\x00\x00\x00",
        [Discarded(BAD_CHECKSUM, BAD_READ_ADDRESS)],
        3,
        [Discarded(GARBAGE_NO_START, b"\x00\x00\x00")],
    ),
    (
        "good frame then a short bad frame: the good one at once, the bad one waits",
        REPLY + BAD_READ_ADDRESS,
        [REPLY_FRAME],
        12,
        [Discarded(BAD_CHECKSUM, BAD_READ_ADDRESS)],
    ),
    (
        "short bad frame then a good frame",
        BAD_READ_ADDRESS + REPLY,
        [Discarded(BAD_CHECKSUM, BAD_READ_ADDRESS), REPLY_FRAME],
        0,
        [],
    ),
    (
        "bad frame waiting on a start at its index 1",
        WAITS_AT_1,
        [],
        16,
        [Discarded(BAD_CHECKSUM, WAITS_AT_1)],
    ),
    (
        "bad frame waiting on a start at its index 8",
        WAITS_AT_8,
        [],
        28,
        [Discarded(BAD_CHECKSUM, WAITS_AT_8)],
    ),
    (
        # A complete good frame after it wins over the start still waiting inside.
        "bad frame waiting on an inner start, then a good frame",
        WAITS_AT_1 + REPLY,
        [Discarded(BAD_CHECKSUM, WAITS_AT_1), REPLY_FRAME],
        0,
        [],
    ),
    (
        # Exactly 8 bytes from a 68 decide it: no 68 at its eighth byte.
        "eight bytes from a 68 without a second 68 are garbage, even at the end",
        bytes.fromhex("68 01 02 03 04 05 06 07"),
        [],
        8,
        [Discarded(GARBAGE_NO_START, bytes.fromhex("68 01 02 03 04 05 06 07"))],
    ),
    (
        "seven bytes from a 68 cannot be decided: truncated at the end",
        bytes.fromhex("68 01 02 03 04 05 06"),
        [],
        7,
        [Discarded(TRUNCATED, bytes.fromhex("68 01 02 03 04 05 06"))],
    ),
    (
        "garbage is reported once a plausible header follows it",
        bytes.fromhex("55 68 01 02 03 04 05 06 68 91"),
        [Discarded(GARBAGE, b"\x55")],
        9,
        [Discarded(TRUNCATED, bytes.fromhex("68 01 02 03 04 05 06 68 91"))],
    ),
    (
        "a header with its length byte and nothing more",
        bytes.fromhex("68 01 02 03 04 05 06 68 91 00"),
        [],
        10,
        [Discarded(TRUNCATED, bytes.fromhex("68 01 02 03 04 05 06 68 91 00"))],
    ),
    (
        # Only the FE run right before a start byte is a wake-up preamble;
        # 58 is an ordinary byte and stays in the garbage.
        "garbage ending in wake-up bytes",
        bytes.fromhex("FE 01 58 FE FE") + REPLY,
        [Discarded(GARBAGE, bytes.fromhex("FE 01 58")), REPLY_FRAME],
        0,
        [],
    ),
    ("wake-up bytes alone are not reported", b"\xfe" * 7, [], 7, []),
    ("wake-up bytes after the last frame", REPLY + b"\xfe\xfe", [REPLY_FRAME], 2, []),
    (
        "garbage ending in wake-up bytes at the end of a stream",
        bytes.fromhex("01 58 FE"),
        [],
        3,
        [Discarded(GARBAGE_NO_START, bytes.fromhex("01 58"))],
    ),
    (
        # The good frame is the shortest possible, right at the buffer's end.
        "a 12-byte frame right after a header that claims 255 bytes",
        bytes.fromhex("68 00 00 00 00 00 00 68 11 FF") + READ_ADDRESS,
        [Discarded(TRUNCATED, bytes.fromhex("68 00 00 00 00 00 00 68 11 FF")), READ_ADDRESS_FRAME],
        0,
        [],
    ),
    # One frame's shape but for one thing (see above): no frame comes out.
    ("no start byte at the first byte", SHIFTED, [], 16, [Discarded(GARBAGE_NO_START, SHIFTED)]),
    (
        "no second start byte at the eighth byte",
        NO_SECOND_START,
        [],
        14,
        [Discarded(GARBAGE, NO_SECOND_START[:8]), Discarded(TRUNCATED, NO_SECOND_START[8:])],
    ),
    (
        "good frame then an end byte",
        CS_0B + b"\x16",
        [Frame("000000000001", 0x91, CS_0B[10:-2].translate(SUB_33))],
        1,
        [Discarded(GARBAGE_NO_START, b"\x16")],
    ),
    (
        "length byte claims fewer bytes than the buffer holds",
        LENGTH_IN_DATA,
        [],
        14,
        [Discarded(BAD_CHECKSUM, LENGTH_IN_DATA[:13]), Discarded(GARBAGE_NO_START, b"\x16")],
    ),
    ("bad end byte after checksum 16", BAD_END_CS_16, [Discarded(BAD_END, BAD_END_CS_16)], 0, []),
    ("short frame, checksum FF", SHORT_CS_FF, [], 12, [Discarded(BAD_CHECKSUM, SHORT_CS_FF)]),
    ("short frame, checksum 00", SHORT_CS_00, [], 12, [Discarded(BAD_CHECKSUM, SHORT_CS_00)]),
    (
        "checksum of two bytes only",
        CS_OF_TWO_BYTES,
        [Discarded(BAD_CHECKSUM, CS_OF_TWO_BYTES)],
        0,
        [],
    ),
    (
        "checksum without the last data byte",
        CS_WITHOUT_LAST_DATA,
        [Discarded(BAD_CHECKSUM, CS_WITHOUT_LAST_DATA)],
        0,
        [],
    ),
    (
        "checksum equal to an address byte",
        CS_LIKE_ADDRESS,
        [Discarded(BAD_CHECKSUM, CS_LIKE_ADDRESS)],
        0,
        [],
    ),
    (
        "checksum equal to the last data byte",
        CS_LIKE_DATA,
        [Discarded(BAD_CHECKSUM, CS_LIKE_DATA)],
        0,
        [],
    ),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("data", "fed", "held", "flushed"), [c[1:] for c in CASES], ids=IDS)
def test_case_fed_whole(data: bytes, fed: list[Event], held: int, flushed: list[Event]) -> None:
    decoder = Decoder()
    assert decoder.feed(data) == fed
    assert decoder.buffered == held
    assert decoder.flush() == flushed
    assert decoder.buffered == 0


@pytest.mark.parametrize(("data", "fed", "held", "flushed"), [c[1:] for c in CASES], ids=IDS)
def test_case_fed_bytewise(data: bytes, fed: list[Event], held: int, flushed: list[Event]) -> None:
    decoder = Decoder()
    events: list[Event] = []
    for i in range(len(data)):
        events += decoder.feed(data[i : i + 1])
    assert events == fed
    assert decoder.buffered == held
    assert decoder.flush() == flushed
