"""Framing: ``68 A0..A5 68 C L DATA CS 16``, the frame builder and the stream decoder.

The decoder is sans-I/O: bytes go in with :meth:`Decoder.feed`, events come
out (:class:`Frame` for each good frame, :class:`Discarded` for bytes thrown
away, with why). It never raises on device bytes.

Resynchronisation rules (the same events come out however the bytes are cut
into chunks, except in the rare cases noted below):

- ``FE`` wake-up bytes before a start byte are skipped silently.
- Bytes before a plausible frame start (``68`` with a second ``68`` seven bytes
  on) are reported once as ``garbage before start byte``. A lone ``68`` without
  its second ``68`` is garbage too.
- A frame with a bad checksum or end byte is reported with that reason, and
  scanning resumes inside it, at the byte after its start: a good frame that
  starts inside the bad one's claimed length is found (the bytes before it are
  then a ``truncated frame``).
- A frame start still waiting for bytes never holds back a complete good frame
  that is already buffered after it: the waiting start is reported as a
  ``truncated frame`` and the good frame comes out at once. (If the waiting
  start later would have completed with a good checksum around that frame,
  the outcome depends on chunking; that needs a complete valid frame embedded
  in another one's data.)
- Memory is bounded: at most ``MAX_GARBAGE`` bytes of garbage are held waiting
  for a start byte (a longer run is reported at once, so runs longer than that
  may be split differently by chunking), and a frame is at most 267 bytes
  long. Time is linear in the input: every search looks at most one frame
  length ahead, even in an endless run of ``68`` bytes.
- :meth:`Decoder.flush` ends a stream: what is still held comes out as
  ``truncated frame`` or ``garbage without start byte``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocols.dlt645.bcd import ADD_33, SUB_33, address_from_bytes, address_to_bytes
from protocols.dlt645.codes import ABNORMAL_BIT, DIRECTION_BIT, FOLLOW_UP_BIT, FUNCTION_MASK
from protocols.dlt645.errors import LocalProtocolError

START: Final = 0x68
END: Final = 0x16
WAKEUP: Final = b"\xfe\xfe\xfe\xfe"
"""Wake-up preamble a master sends before a request (not added by ``encode_frame``)."""
MAX_DATA: Final = 255
MAX_FRAME: Final = 12 + MAX_DATA
MAX_GARBAGE: Final = 1024
"""Garbage held while waiting for a start byte before it is reported anyway."""

GARBAGE: Final = "garbage before start byte"
GARBAGE_NO_START: Final = "garbage without start byte"
BAD_CHECKSUM: Final = "bad checksum"
BAD_END: Final = "bad end byte"
TRUNCATED: Final = "truncated frame"


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame; ``data`` has the 0x33 offset already removed."""

    address: str
    control: int
    data: bytes

    @property
    def is_reply(self) -> bool:
        """True for frames sent by a meter (control bit 7)."""
        return bool(self.control & DIRECTION_BIT)

    @property
    def is_abnormal(self) -> bool:
        """True for abnormal (error) replies (control bit 6)."""
        return bool(self.control & ABNORMAL_BIT)

    @property
    def has_follow_up(self) -> bool:
        """True when follow-up frames exist (control bit 5)."""
        return bool(self.control & FOLLOW_UP_BIT)

    @property
    def function(self) -> int:
        """The function code (control bits 4-0)."""
        return self.control & FUNCTION_MASK


@dataclass(frozen=True, slots=True)
class Discarded:
    """Bytes the decoder threw away, and why (one of the reason constants)."""

    reason: str
    data: bytes


# Building a frozen dataclass through its __init__ costs one object.__setattr__
# call per field; on the decoder's hot path the slot descriptors are set
# directly instead (same object, ~40% cheaper). Only for trusted values.
_new = object.__new__
_set_address = Frame.__dict__["address"].__set__
_set_control = Frame.__dict__["control"].__set__
_set_data = Frame.__dict__["data"].__set__


def _frame(address: str, control: int, data: bytes) -> Frame:
    frame: Frame = _new(Frame)
    _set_address(frame, address)
    _set_control(frame, control)
    _set_data(frame, data)
    return frame


def encode_frame(address: str, control: int, data: bytes) -> bytes:
    """A complete frame: adds the +0x33 offset, the checksum and the end byte.

    No ``FE`` preamble (prepend :data:`WAKEUP` where the line needs it). Raises
    :class:`LocalProtocolError` for a bad address, control byte or data length.
    """
    try:
        raw_address = address_to_bytes(address)
    except ValueError as exc:
        raise LocalProtocolError(str(exc)) from None
    if not 0 <= control <= 0xFF:
        raise LocalProtocolError(f"control byte {control} is not in 0..255")
    if len(data) > MAX_DATA:
        raise LocalProtocolError(
            f"frame data of {len(data)} bytes exceeds {MAX_DATA} (address {address})"
        )
    head = (
        b"\x68" + raw_address + bytes((START, control, len(data))) + bytes(data).translate(ADD_33)
    )
    return head + bytes((sum(head) & 0xFF, END))


# Classification of a candidate start byte.
_WAIT_HEADER: Final = 0  # fewer than 8 bytes: cannot tell yet
_WAIT_BODY: Final = 1  # header fine, frame not complete yet
_GOOD: Final = 2
_NOT_START: Final = 3  # no second 68: this 68 is garbage
_BAD_CHECKSUM: Final = 4
_BAD_END: Final = 5


def _classify(buf: bytes, s: int, n: int) -> tuple[int, int]:
    """Classify the candidate frame at ``s``; return the class and its end (or 0)."""
    if n - s < 8:
        return _WAIT_HEADER, 0
    if buf[s + 7] != START:
        return _NOT_START, 0
    if n - s < 10:
        return _WAIT_BODY, 0
    end = s + 12 + buf[s + 9]
    if end > n:
        return _WAIT_BODY, end
    if sum(buf[s : end - 2]) & 0xFF != buf[end - 2]:
        return _BAD_CHECKSUM, end
    if buf[end - 1] != END:
        return _BAD_END, end
    return _GOOD, end


def _first_good(buf: bytes, start: int, stop: int, n: int) -> int:
    """Position of the first complete good frame starting in ``[start, stop)``, or -1."""
    s = buf.find(START, start, stop)
    while s >= 0:
        if n - s < 12:
            return -1
        if _classify(buf, s, n)[0] == _GOOD:
            return s
        s = buf.find(START, s + 1, stop)
    return -1


def _waiting_within(buf: bytes, start: int, stop: int, n: int) -> bool:
    """True if a candidate start in ``[start, stop)`` still waits for bytes."""
    s = buf.find(START, start, stop)
    while s >= 0:
        if _classify(buf, s, n)[0] in (_WAIT_HEADER, _WAIT_BODY):
            return True
        s = buf.find(START, s + 1, stop)
    return False


def _garbage(events: list[Frame | Discarded], run: bytes, reason: str = GARBAGE) -> None:
    # Trailing FE bytes are the wake-up preamble of what follows, not garbage.
    core = run.rstrip(b"\xfe")
    if core:
        events.append(Discarded(reason, core))


class Decoder:
    """Stream decoder: ``feed`` bytes as they arrive, get events back.

    Never raises on device bytes. Call :meth:`flush` at the end of a stream
    (or to drop stale bytes between transactions) to get what is still held.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    @property
    def buffered(self) -> int:
        """Number of bytes held, waiting for the rest of a frame or a start byte."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | Discarded]:
        """Add bytes (any bytes-like); return the frames completed and the bytes discarded."""
        buf = self._buf + data if self._buf else data if type(data) is bytes else bytes(data)
        n = len(buf)
        # Fast path: a buffer that is exactly one good frame (the usual reply).
        if (
            n >= 12
            and buf[0] == START
            and buf[7] == START
            and n == 12 + buf[9]
            and buf[-1] == END
            and sum(buf[:-2]) & 0xFF == buf[-2]
        ):
            self._buf = b""
            return [_frame(address_from_bytes(buf[1:7]), buf[8], buf[10:-2].translate(SUB_33))]
        events, self._buf = _scan(buf, final=False)
        return events

    def flush(self) -> list[Frame | Discarded]:
        """End of stream: report everything still held as discarded, and reset."""
        events, _ = _scan(self._buf, final=True)
        self._buf = b""
        return events


def _scan(buf: bytes, final: bool) -> tuple[list[Frame | Discarded], bytes]:
    """Decode what ``buf`` holds; return the events and the bytes to keep."""
    events: list[Frame | Discarded] = []
    n = len(buf)
    g = 0  # first byte not yet reported
    scan = 0  # where to look for the next start byte
    while True:
        s = buf.find(START, scan)
        if s < 0:
            if final or n - g > MAX_GARBAGE:
                _garbage(events, buf[g:], GARBAGE_NO_START)
                g = n
            break
        code, end = _classify(buf, s, n)
        if code == _GOOD:
            if s > g:
                _garbage(events, buf[g:s])
            events.append(
                _frame(
                    address_from_bytes(buf[s + 1 : s + 7]),
                    buf[s + 8],
                    buf[s + 10 : end - 2].translate(SUB_33),
                )
            )
            g = scan = end
            continue
        if code == _NOT_START:
            scan = s + 1
            continue
        if code == _WAIT_HEADER:
            # Nothing after s can be complete either.
            if final:
                _garbage(events, buf[g:s])
                events.append(Discarded(TRUNCATED, buf[s:]))
                g = n
            elif s - g > MAX_GARBAGE:
                _garbage(events, buf[g:s])
                g = s
            break
        if code == _WAIT_BODY:
            if s > g:
                _garbage(events, buf[g:s])
                g = s
            # Everything buffered after s lies inside its claimed length, so
            # this search is bounded by one frame.
            t = _first_good(buf, s + 1, n, n)
            if t >= 0:
                _garbage(events, buf[s:t], TRUNCATED)
                g = scan = t
                continue
            if final:
                events.append(Discarded(TRUNCATED, buf[s:]))
                g = n
            break
        # A complete frame with a bad checksum or end byte. Searches stay
        # within one frame length of it, so endless 68 bytes cost linear time.
        if s > g:
            _garbage(events, buf[g:s])
            g = s
        t = _first_good(buf, s + 1, end, n)
        if t >= 0:
            _garbage(events, buf[s:t], TRUNCATED)
            g = scan = t
            continue
        if (
            not final
            and _waiting_within(buf, s + 1, end, n)
            # A waiting start inside reaches at most MAX_FRAME bytes on; a good
            # frame complete within that reach supersedes it.
            and _first_good(buf, end, min(n, end + MAX_FRAME), n) < 0
        ):
            break  # a start inside this frame may still complete as a good frame
        events.append(Discarded(BAD_CHECKSUM if code == _BAD_CHECKSUM else BAD_END, buf[s:end]))
        g = scan = end
    return events, buf[g:]
