"""Framing edge cases, pinned exactly: which bytes each event carries, and when it comes out.

The rules under test are the resynchronisation rules in the docstring of
``protocols/dlt645/frame.py``. Every expectation below is reasoned from them
and from the frame layout ``68 A0..A5 68 C L DATA CS 16`` (CS = sum mod 256 of
the bytes from the first 68 through the last DATA byte); each case says why.
Frames are built at wire level here (DATA already offset by 0x33) so that a
case can break exactly one thing.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.dlt645 import (
    BAD_CHECKSUM,
    BAD_END,
    GARBAGE,
    GARBAGE_NO_START,
    TRUNCATED,
    Decoder,
    Discarded,
    Frame,
    LocalProtocolError,
    encode_frame,
)
from protocols.dlt645.bcd import SUB_33
from protocols.dlt645.frame import MAX_DATA, MAX_FRAME, MAX_GARBAGE
from tests.protocols.dlt645.feeding import Event, bytewise, timeline, whole

# Test vectors from protocol-notes.md.
REPLY = bytes.fromhex("68 01 00 00 00 00 00 68 91 08 33 33 34 33 AB 89 67 45 17 16")
REPLY_FRAME = Frame("000000000001", 0x91, bytes.fromhex("00000100 78563412"))
READ_ADDRESS = bytes.fromhex("68 AA AA AA AA AA AA 68 13 00 DF 16")
READ_ADDRESS_FRAME = Frame("AAAAAAAAAAAA", 0x13, b"")


def wire(
    address: bytes, control: int, data: bytes, *, cs: int | None = None, end: int = 0x16
) -> bytes:
    """A frame from wire-level parts; ``cs`` overrides the right checksum."""
    head = b"\x68" + address + bytes((0x68, control, len(data))) + data
    return head + bytes((sum(head) & 0xFF if cs is None else cs, end))


def with_checksum(address: bytes, control: int, data: bytes, target: int) -> bytes:
    """A good frame whose checksum is ``target``: a pad byte is put before ``data``."""
    pad = (target - sum(wire(address, control, b"\x00" + data)[:-2])) & 0xFF
    frame = wire(address, control, bytes((pad,)) + data)
    assert frame[-2] == target
    return frame


def set_byte(frame: bytes, index: int, value: int) -> bytes:
    out = bytearray(frame)
    out[index] = value
    return bytes(out)


ADDR = bytes.fromhex("01 00 00 00 00 00")  # meter 000000000001
ZERO = bytes(6)
BAD_REPLY = set_byte(REPLY, -2, REPLY[-2] ^ 0x01)  # checksum off by one bit
BAD_END_REPLY = set_byte(REPLY, -1, 0x17)
# A bad 12-byte frame: its second 68 has only 4 bytes after it, so that 68
# may still be the start of a frame and the report waits for more bytes.
BAD_READ_ADDRESS = set_byte(READ_ADDRESS, -2, 0xDE)


def test_vectors_used_here_are_what_they_claim() -> None:
    assert whole(REPLY) == [REPLY_FRAME]
    assert whole(READ_ADDRESS) == [READ_ADDRESS_FRAME]
    assert wire(ADDR, 0x91, REPLY[10:18]) == REPLY
    assert wire(bytes.fromhex("AA") * 6, 0x13, b"") == READ_ADDRESS


# --- a table: bytes in, events out of feed(), bytes held, events out of flush()

# Cases that break the fast path for a buffer that is exactly one frame: each
# has the shape of one frame but for one thing, so it is no frame.
SHIFTED = bytes.fromhex("00 68 01 02 03 04 05 68 91 04 33 33 34 33")
SHIFTED += bytes((sum(SHIFTED) & 0xFF, 0x16))
NO_SECOND_START = bytes.fromhex("68 01 00 00 00 00 00 00 68 02 33 33")
NO_SECOND_START += bytes((sum(NO_SECOND_START) & 0xFF, 0x16))
# Checksum 0B: the end byte 16 is then the checksum of all bytes before it
# (0B + 0B), so the frame plus a trailing 16 looks like one frame, one byte longer.
CS_0B = with_checksum(ADDR, 0x91, b"\x33\x33\x34\x33", 0x0B)
# Claims 1 data byte (13 bytes in all) with a wrong checksum; its first data
# byte (02) plus 12 is the length of the whole buffer, whose last two bytes
# would be a right checksum and end byte for that length.
LENGTH_IN_DATA = bytes.fromhex("68 01 00 00 00 00 00 68 91 01 02 00")
LENGTH_IN_DATA += bytes((sum(LENGTH_IN_DATA) & 0xFF, 0x16))
BAD_END_CS_16 = set_byte(with_checksum(ADDR, 0x91, b"\x33\x33\x34\x33", 0x16), -1, 0x17)
# Right checksum D0 (= 68 + 68); FF and 00 are wrong.
SHORT_CS_FF = wire(ZERO, 0x00, b"", cs=0xFF)
SHORT_CS_00 = wire(ZERO, 0x00, b"", cs=0x00)
CS_OF_TWO_BYTES = set_byte(REPLY, -2, (0x68 + 0x01) & 0xFF)
CS_WITHOUT_LAST_DATA = set_byte(REPLY, -2, sum(REPLY[:-3]) & 0xFF)
# Right checksum 5A, equal to the address byte at index 2; sent as 5B.
CS_LIKE_ADDRESS = with_checksum(bytes.fromhex("01 5A 00 00 00 00"), 0x91, b"\x33\x33\x34\x33", 0x5A)
CS_LIKE_ADDRESS = set_byte(CS_LIKE_ADDRESS, -2, 0x5B)
# Right checksum 99, equal to the last data byte; sent as 98.
CS_LIKE_DATA = set_byte(with_checksum(ADDR, 0x91, b"\x33\x33\x34\x33\x99", 0x99), -2, 0x98)

# A bad frame with a start byte inside it that still waits for bytes: the
# report waits too, since that start may yet complete as a good frame.
# At index 1 (address byte 68, control 68 seven bytes on, claiming FF bytes):
WAITS_AT_1 = wire(bytes.fromhex("68 00 00 00 00 00"), 0x68, bytes.fromhex("FF 33 33 33"))
WAITS_AT_1 = set_byte(WAITS_AT_1, -2, WAITS_AT_1[-2] ^ 0x01)
# At index 8 (control 68, a data 68 seven bytes on, claiming FF bytes), right
# after a 68 at index 7 that is no start:
WAITS_AT_8 = wire(ADDR, 0x68, bytes.fromhex("33 33 33 33 33 68 33 FF 33 33 33 33 33 33 33 33"))
WAITS_AT_8 = set_byte(WAITS_AT_8, -2, WAITS_AT_8[-2] ^ 0x01)

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


# --- when each event comes out, byte by byte ---------------------------------


def test_bad_checksum_is_reported_with_its_end_byte() -> None:
    assert timeline(BAD_REPLY) == [(len(BAD_REPLY), Discarded(BAD_CHECKSUM, BAD_REPLY))]


def test_short_bad_frame_is_reported_when_its_inner_68_is_resolved() -> None:
    # The inner 68 is at index 7; its eighth byte (index 14) is the 15th byte.
    assert timeline(BAD_READ_ADDRESS + b"\x00\x00\x00") == [
        (15, Discarded(BAD_CHECKSUM, BAD_READ_ADDRESS)),
        (16, Discarded(GARBAGE_NO_START, b"\x00\x00\x00")),
    ]


def test_bad_frame_waiting_on_inner_start_is_reported_with_the_next_good_frame() -> None:
    n = len(WAITS_AT_1 + REPLY)
    assert timeline(WAITS_AT_1 + REPLY) == [
        (n, Discarded(BAD_CHECKSUM, WAITS_AT_1)),
        (n, REPLY_FRAME),
    ]


def test_lone_start_byte_is_reported_when_the_next_header_is_plausible() -> None:
    # The 68 of REPLY at index 1 is confirmed by its second 68 at index 8 (the 9th byte).
    assert timeline(b"\x68" + REPLY) == [
        (9, Discarded(GARBAGE, b"\x68")),
        (1 + len(REPLY), REPLY_FRAME),
    ]


# --- bounded memory: MAX_GARBAGE on both sides -------------------------------

# No 68 (start) and no FE (wake-up) in it.
NOISE = bytes(range(0x69, 0xC9)) * 20


def _fed(data: bytes) -> tuple[list[Event], int]:
    decoder = Decoder()
    return decoder.feed(data), decoder.buffered


@pytest.mark.parametrize("before", [b"", REPLY], ids=["alone", "after a frame"])
def test_garbage_without_start_is_held_up_to_the_bound(before: bytes) -> None:
    frames = [REPLY_FRAME] if before else []
    noise = NOISE[:MAX_GARBAGE]
    assert _fed(before + noise) == (frames, MAX_GARBAGE)
    noise = NOISE[: MAX_GARBAGE + 1]
    assert _fed(before + noise) == ([*frames, Discarded(GARBAGE_NO_START, noise)], 0)


def test_garbage_without_start_is_reported_with_the_byte_past_the_bound() -> None:
    noise = NOISE[: MAX_GARBAGE + 1]
    assert timeline(noise) == [(MAX_GARBAGE + 1, Discarded(GARBAGE_NO_START, noise))]


@pytest.mark.parametrize("before", [b"", REPLY], ids=["alone", "after a frame"])
def test_long_garbage_then_partial_header(before: bytes) -> None:
    # A start that cannot be classified yet (fewer than 8 bytes) stops the
    # scan; the garbage before it is held up to the bound, then reported.
    frames = [REPLY_FRAME] if before else []
    partial = b"\x68\x01\x00"
    noise = NOISE[:MAX_GARBAGE]
    assert _fed(before + noise + partial) == (frames, MAX_GARBAGE + 3)
    noise = NOISE[: MAX_GARBAGE + 1]
    assert _fed(before + noise + partial) == ([*frames, Discarded(GARBAGE, noise)], 3)
    decoder = Decoder()
    decoder.feed(before + noise + partial)
    assert decoder.flush() == [Discarded(TRUNCATED, partial)]


def test_long_garbage_then_partial_header_ends_as_garbage_and_truncated() -> None:
    noise = NOISE[:MAX_GARBAGE]
    decoder = Decoder()
    decoder.feed(noise + b"\x68\x01")
    assert decoder.flush() == [Discarded(GARBAGE, noise), Discarded(TRUNCATED, b"\x68\x01")]


# --- the builder's bounds ----------------------------------------------------


@pytest.mark.parametrize("control", [0x00, 0xFF])
def test_control_byte_bounds_are_accepted(control: int) -> None:
    assert whole(encode_frame("000000000001", control, b"")) == [
        Frame("000000000001", control, b"")
    ]


@pytest.mark.parametrize("control", [-1, 0x100])
def test_control_byte_out_of_range_is_refused(control: int) -> None:
    message = f"control byte {control} is not in 0..255"
    with pytest.raises(LocalProtocolError, match=f"^{re.escape(message)}$"):
        encode_frame("000000000001", control, b"")


def test_data_length_bounds() -> None:
    assert MAX_FRAME == 12 + MAX_DATA == 267  # L is one byte
    wire_bytes = encode_frame("000000000001", 0x91, bytes(MAX_DATA))
    assert len(wire_bytes) == MAX_FRAME
    assert bytewise(wire_bytes) == [Frame("000000000001", 0x91, bytes(MAX_DATA))]
    message = f"frame data of {MAX_DATA + 1} bytes exceeds {MAX_DATA} (address 000000000001)"
    with pytest.raises(LocalProtocolError, match=f"^{re.escape(message)}$"):
        encode_frame("000000000001", 0x91, bytes(MAX_DATA + 1))


def test_bad_address_is_a_local_protocol_error_naming_it() -> None:
    message = "meter address '12345' must be 12 digits 0-9 (or the wildcard digit A)"
    with pytest.raises(LocalProtocolError, match=f"^{re.escape(message)}$") as info:
        encode_frame("12345", 0x11, b"")
    assert info.value.__cause__ is None


def test_encode_accepts_bytes_like_data() -> None:
    assert encode_frame("000000000001", 0x91, bytearray(REPLY_FRAME.data)) == REPLY


# --- properties --------------------------------------------------------------


@given(
    st.integers(0, 255),
    st.text(alphabet="0123456789", min_size=12, max_size=12).filter(lambda a: a[:2] != "68"),
    st.integers(0, 255),
    st.binary(max_size=40),
)
def test_good_frame_right_after_any_single_byte(
    first: int, address: str, control: int, data: bytes
) -> None:
    # The top address byte is not 68, so a 68 before the frame has no second
    # 68 seven bytes on: it is garbage like any other byte (FE: a wake-up).
    frame = encode_frame(address, control, data)
    expected: list[Event] = [] if first == 0xFE else [Discarded(GARBAGE, bytes((first,)))]
    expected.append(Frame(address, control, data))
    stream = bytes((first,)) + frame
    assert _fed(stream) == (expected, 0)
    assert bytewise(stream) == expected
