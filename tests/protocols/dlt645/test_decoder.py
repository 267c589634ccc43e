"""The stream decoder: resynchronisation, discards, bounded memory, never raising."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.dlt645 import (
    BAD_CHECKSUM,
    BAD_END,
    GARBAGE,
    GARBAGE_NO_START,
    TRUNCATED,
    WAKEUP,
    Decoder,
    Discarded,
    Frame,
    encode_frame,
    read_reply,
)
from protocols.dlt645.frame import MAX_GARBAGE
from tests.protocols.dlt645.feeding import both, bytewise, chunked, whole
from tests.protocols.dlt645.strategies import GARBAGE as RANDOM_GARBAGE
from tests.protocols.dlt645.strategies import PIECES, frames

REPLY = bytes.fromhex("68 01 00 00 00 00 00 68 91 08 33 33 34 33 AB 89 67 45 17 16")
REPLY_FRAME = Frame("000000000001", 0x91, bytes.fromhex("0000010078563412"))


def test_garbage_before_frame_is_reported_then_frame() -> None:
    assert both(b"\x01\x02\x03" + REPLY) == [Discarded(GARBAGE, b"\x01\x02\x03"), REPLY_FRAME]


def test_wakeup_bytes_are_not_garbage() -> None:
    assert both(WAKEUP + REPLY + WAKEUP + REPLY) == [REPLY_FRAME, REPLY_FRAME]


def test_garbage_then_wakeup_reports_only_the_garbage() -> None:
    assert both(b"\x55\xfe" + WAKEUP + REPLY) == [Discarded(GARBAGE, b"\x55"), REPLY_FRAME]


def test_bad_checksum_is_reported_and_next_frame_found() -> None:
    bad = bytearray(REPLY)
    bad[-2] ^= 0x01
    assert both(bytes(bad) + REPLY) == [Discarded(BAD_CHECKSUM, bytes(bad)), REPLY_FRAME]


def test_bad_end_byte_is_reported_and_next_frame_found() -> None:
    bad = REPLY[:-1] + b"\x17"
    assert both(bad + WAKEUP + REPLY) == [Discarded(BAD_END, bad), REPLY_FRAME]


def test_false_start_with_huge_length_does_not_swallow_following_frame() -> None:
    # A plausible header in the noise claims 255 data bytes; the good frame
    # right after it must come out at once, not after 267 more bytes.
    false_start = bytes.fromhex("68 00 00 00 00 00 00 68 11 FF")
    decoder = Decoder()
    events = decoder.feed(false_start + REPLY)
    assert events == [Discarded(TRUNCATED, false_start), REPLY_FRAME]
    assert decoder.buffered == 0
    assert bytewise(false_start + REPLY) == events


def test_good_frame_inside_a_bad_frames_length_is_found() -> None:
    # The header claims 8 data bytes (20 in all), so its "frame" ends inside
    # the good one; the good one must still be decoded.
    header = bytes.fromhex("68 01 00 00 00 00 00 68 91 08")
    assert both(header + REPLY) == [Discarded(TRUNCATED, header), REPLY_FRAME]


def test_lone_start_bytes_in_noise_are_garbage() -> None:
    noise = bytes.fromhex("68 68 01 68 16 68")
    assert both(noise + REPLY) == [Discarded(GARBAGE, noise), REPLY_FRAME]


def test_frame_cut_at_end_of_stream_is_truncated_on_flush() -> None:
    decoder = Decoder()
    assert decoder.feed(REPLY[:-3]) == []
    assert decoder.buffered == len(REPLY) - 3
    assert decoder.flush() == [Discarded(TRUNCATED, REPLY[:-3])]
    assert decoder.buffered == 0


def test_garbage_without_start_byte_is_held_then_flushed() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\x01\x02") == []
    assert decoder.flush() == [Discarded(GARBAGE_NO_START, b"\x01\x02")]


def test_reply_split_anywhere_decodes_once() -> None:
    for cut in range(len(REPLY) + 1):
        decoder = Decoder()
        assert decoder.feed(REPLY[:cut]) + decoder.feed(REPLY[cut:]) == [REPLY_FRAME]


def test_endless_garbage_keeps_memory_bounded() -> None:
    decoder = Decoder()
    chunk = bytes(range(0x69, 0x69 + 100)) * 10  # no start byte at all
    reported = 0
    for _ in range(200):
        for event in decoder.feed(chunk):
            assert isinstance(event, Discarded)
            reported += len(event.data)
        assert decoder.buffered <= MAX_GARBAGE
    assert reported + decoder.buffered == 200 * len(chunk)


@pytest.mark.timeout(10)
def test_endless_start_bytes_cost_linear_time() -> None:
    # Every 68 looks like a frame start with a bad checksum; a search that is
    # not bounded by one frame length takes minutes here instead of a second.
    decoder = Decoder()
    events = decoder.feed(b"\x68" * 200_000) + decoder.flush()
    assert all(isinstance(e, Discarded) for e in events)
    assert sum(len(e.data) for e in events) == 200_000


def test_longest_frame_decodes() -> None:
    data = bytes(range(255))
    wire = encode_frame("000000000001", 0x91, data)
    assert len(wire) == 267
    assert both(wire) == [Frame("000000000001", 0x91, data)]


def test_accepts_bytearray_and_memoryview() -> None:
    assert Decoder().feed(bytearray(REPLY)) == [REPLY_FRAME]
    assert Decoder().feed(memoryview(REPLY)) == [REPLY_FRAME]


@settings(max_examples=200)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=20))
def test_random_bytes_never_raise_and_memory_stays_bounded(data: bytes, cuts: list[int]) -> None:
    decoder = Decoder()
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        for event in decoder.feed(data[start:cut]):
            assert isinstance(event, Frame | Discarded)
        start = cut
        assert decoder.buffered <= MAX_GARBAGE + 2 * 267
    decoder.flush()
    assert decoder.buffered == 0


@settings(max_examples=200)
@given(RANDOM_GARBAGE, frames(), st.lists(st.integers(0, 400), max_size=6))
def test_valid_frame_after_random_garbage_is_found(
    garbage: bytes, frame: tuple[str, int, bytes, bytes], cuts: list[int]
) -> None:
    address, control, data, wire = frame
    expected = Frame(address, control, data)
    stream = garbage + wire
    if _swallowed(stream, len(garbage)):
        return  # the protocol cannot tell that frame from a real one; see _swallowed
    for events in (whole(stream), chunked(stream, cuts)):
        frames_out = [e for e in events if isinstance(e, Frame)]
        assert frames_out[-1] == expected
    # Found without waiting for more bytes or a flush.
    decoder = Decoder()
    assert expected in decoder.feed(stream)


def _swallowed(stream: bytes, boundary: int) -> bool:
    """Whether a frame that starts in the garbage (before ``boundary``) and ends after it is
    valid: its length byte took the real frame's bytes as data, and its checksum and end
    byte matched by chance (1 in 65,536). Hypothesis finds such streams; the decoder is
    right to take them, as a receiver on the line would, and the real frame is lost."""
    for start in range(boundary):
        head = stream[start : start + 10]
        if len(head) < 10 or head[0] != 0x68 or head[7] != 0x68:
            continue
        end = start + 12 + head[9]
        if boundary < end <= len(stream):
            candidate = stream[start:end]
            if candidate[-1] == 0x16 and sum(candidate[:-2]) % 256 == candidate[-2]:
                return True
    return False


@settings(max_examples=200)
@given(PIECES, st.lists(st.integers(0, 2000), max_size=10))
def test_events_do_not_depend_on_chunking(pieces: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(pieces)
    events = whole(stream)
    assert chunked(stream, cuts) == events
    assert bytewise(stream) == events


@settings(max_examples=200)
@given(PIECES)
def test_every_byte_is_a_frame_a_discard_or_a_wakeup(pieces: list[bytes]) -> None:
    stream = b"".join(pieces)
    accounted = 0
    for event in whole(stream):
        if isinstance(event, Frame):
            accounted += 12 + len(event.data)
        else:
            accounted += len(event.data)
    # Only FE wake-up bytes may go unreported.
    assert accounted <= len(stream)
    assert len(stream) - accounted <= stream.count(0xFE)


def test_read_reply_roundtrip_through_noise_and_bad_frames() -> None:
    good = read_reply("123456789012", 0x00010000, bytes.fromhex("78563412"))
    bad = bytearray(good)
    bad[12] ^= 0xFF
    events = both(b"\x00\xff" + bytes(bad) + WAKEUP + good)
    assert [type(e) for e in events] == [Discarded, Discarded, Frame]
    assert events[1] == Discarded(BAD_CHECKSUM, bytes(bad))
