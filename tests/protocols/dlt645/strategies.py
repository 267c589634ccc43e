"""Hypothesis strategies shared by the DL/T 645 codec tests."""

from __future__ import annotations

from hypothesis import strategies as st

from protocols.dlt645 import encode_frame

ADDRESSES = st.text(alphabet="0123456789", min_size=12, max_size=12)
# A plausible frame header (two start bytes seven apart, any length byte) with
# nothing after it: the false start that random bytes almost never produce.
FALSE_STARTS = st.builds(
    lambda address, control, length: b"\x68" + address + b"\x68" + bytes((control, length)),
    st.binary(min_size=6, max_size=6),
    st.integers(0, 255),
    st.integers(0, 255),
)
GARBAGE = st.lists(
    st.one_of(st.binary(max_size=16), FALSE_STARTS, st.sampled_from([b"\x68", b"\x16", b"\xfe"])),
    max_size=4,
).map(b"".join)


@st.composite
def frames(draw: st.DrawFn) -> tuple[str, int, bytes, bytes]:
    """A valid frame: (address, control, data, wire bytes)."""
    address = draw(ADDRESSES)
    control = draw(st.integers(0, 255))
    data = draw(st.binary(max_size=60))
    return address, control, data, encode_frame(address, control, data)


@st.composite
def bad_frames(draw: st.DrawFn) -> bytes:
    """A frame with a wrong checksum or a wrong end byte."""
    wire = bytearray(draw(frames())[3])
    if draw(st.booleans()):
        wire[-2] = (wire[-2] + draw(st.integers(1, 255))) & 0xFF
    else:
        wire[-1] = draw(st.integers(0, 255).filter(lambda b: b != 0x16))
    return bytes(wire)


# A stream made of pieces: good frames, bad frames, garbage and wake-up bytes.
PIECES = st.lists(
    st.one_of(
        frames().map(lambda f: f[3]),
        bad_frames(),
        GARBAGE,
        st.just(b"\xfe\xfe\xfe\xfe"),
    ),
    max_size=8,
)
