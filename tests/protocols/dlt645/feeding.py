"""Ways to feed bytes to a fresh :class:`Decoder`, shared by the decoder tests.

House style: every table of bytes and expected events is fed once whole and
once one byte at a time; ``timeline`` also says *when* each event came out.
"""

from __future__ import annotations

from protocols.dlt645 import Decoder, Discarded, Frame

Event = Frame | Discarded


def whole(data: bytes) -> list[Event]:
    """Events of ``data`` fed in one call, then flushed."""
    decoder = Decoder()
    return decoder.feed(data) + decoder.flush()


def bytewise(data: bytes) -> list[Event]:
    """Events of ``data`` fed one byte per call, then flushed."""
    decoder = Decoder()
    events: list[Event] = []
    for i in range(len(data)):
        events += decoder.feed(data[i : i + 1])
    return events + decoder.flush()


def chunked(data: bytes, cuts: list[int]) -> list[Event]:
    """Events of ``data`` cut at ``cuts`` (taken modulo its length + 1), then flushed."""
    decoder = Decoder()
    events: list[Event] = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        events += decoder.feed(data[start:cut])
        start = cut
    return events + decoder.flush()


def both(data: bytes) -> list[Event]:
    """Events of ``data`` fed whole; asserts that byte-by-byte gives the same."""
    events = whole(data)
    assert bytewise(data) == events
    return events


def timeline(data: bytes) -> list[tuple[int, Event]]:
    """Fed one byte at a time: each event with the number of bytes fed when it came out.

    Events that only the final flush gives are stamped ``len(data) + 1``.
    """
    decoder = Decoder()
    out: list[tuple[int, Event]] = []
    for i in range(len(data)):
        out += [(i + 1, e) for e in decoder.feed(data[i : i + 1])]
    out += [(len(data) + 1, e) for e in decoder.flush()]
    return out
