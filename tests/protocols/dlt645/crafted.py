"""Frames built at wire level (DATA already offset by 0x33), each breaking one thing.

Shared by the framing tests. The frame layout is ``68 A0..A5 68 C L DATA CS 16``
with CS the sum mod 256 of the bytes from the first 68 through the last DATA
byte; REPLY and READ_ADDRESS are test vectors of protocol-notes.md.
"""

from __future__ import annotations

from protocols.dlt645 import Frame

# Test vectors from protocol-notes.md.
REPLY = bytes.fromhex("68 01 00 00 00 00 00 68 91 08 33 33 34 33 AB 89 67 45 17 16")
REPLY_FRAME = Frame("000000000001", 0x91, bytes.fromhex("00000100 78563412"))
READ_ADDRESS = bytes.fromhex("68 AA AA AA AA AA AA 68 13 00 DF 16")
READ_ADDRESS_FRAME = Frame("AAAAAAAAAAAA", 0x13, b"")


def wire(address: bytes, control: int, data: bytes, *, cs: int | None = None) -> bytes:
    """A frame from wire-level parts; ``cs`` overrides the right checksum."""
    head = b"\x68" + address + bytes((0x68, control, len(data))) + data
    return head + bytes((sum(head) & 0xFF if cs is None else cs, 0x16))


def with_checksum(address: bytes, control: int, data: bytes, target: int) -> bytes:
    """A good frame whose checksum is ``target``: a pad byte is put before ``data``."""
    pad = (target - sum(wire(address, control, b"\x00" + data)[:-2])) & 0xFF
    frame = wire(address, control, bytes((pad,)) + data)
    assert frame[-2] == target
    return frame


def set_byte(frame: bytes, index: int, value: int) -> bytes:
    """``frame`` with the byte at ``index`` replaced by ``value``."""
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
