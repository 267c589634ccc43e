"""Framing: when each event comes out, the bounds on held garbage, the builder's bounds.

Expectations are reasoned from the resynchronisation rules in the docstring of
``protocols/dlt645/frame.py`` and the frame layout; the crafted frames are in
crafted.py, the table of cases in test_frame_table.py.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.dlt645 import (
    BAD_CHECKSUM,
    GARBAGE,
    GARBAGE_NO_START,
    TRUNCATED,
    Decoder,
    Discarded,
    Frame,
    LocalProtocolError,
    encode_frame,
)
from protocols.dlt645.frame import MAX_DATA, MAX_FRAME, MAX_GARBAGE
from tests.protocols.dlt645.crafted import (
    BAD_READ_ADDRESS,
    BAD_REPLY,
    REPLY,
    REPLY_FRAME,
    WAITS_AT_1,
)
from tests.protocols.dlt645.feeding import Event, bytewise, timeline, whole

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
