"""What a concentrator's ``seq`` says: network gaps and counter restarts, never repeats.

The rule (docs/concentrator-schema.md): a message is a *repeat* only when its content is
byte for byte one already stored (the buffer's ``once`` key is the payload's digest). A
broker's resend of an unacknowledged message, or a concentrator's retry of the same
batch, is such a repeat. ``seq`` decides nothing about storage, so a concentrator that
reboots with its counter or its clock reset, or one message with a wild ``seq``, cannot
make later real data look old and vanish.

``seq`` still tells what happened on the way: this tracker follows each concentrator's
newest *stored* ``seq`` (it is fed in commit order) and reports a jump as a
``network_gap`` and a step back as a ``counter_reset``. With a shared subscription the
other gateways of the group take the missing numbers, so gaps are not reported.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.buffer import ConcentratorMark
from gateway.model import Event, EventKind


class SequenceTracker:
    """Each concentrator's newest stored ``seq``, and the events its next one implies."""

    def __init__(self, marks: Mapping[str, tuple[int, int]], *, shared: bool = False) -> None:
        self._last = {gw: seq for gw, (seq, _ts) in marks.items()}
        self.shared = shared
        """Seq gaps are not reported: other gateways take part of the messages."""

    def stored(self, mark: ConcentratorMark, now_ms: int) -> list[Event]:
        """A message from ``mark.gw`` was stored (call in commit order): the events it implies."""
        prev = self._last.get(mark.gw)
        self._last[mark.gw] = mark.seq
        if prev is None or mark.seq == prev + 1:
            return []
        detail: dict[str, str | int | float | bool | None] = {
            "topic": mark.topic,
            "previous_seq": prev,
            "seq": mark.seq,
        }
        if mark.seq <= prev:
            # Not a repeat (that would not have been stored): the counter started again,
            # or the concentrator sent a different batch under an old number.
            return [
                Event(
                    EventKind.COUNTER_RESET,
                    now_ms,
                    mark.gw,
                    f"concentrator seq restarted at {mark.seq} after {prev}",
                    detail,
                )
            ]
        if self.shared:
            return []
        first, last = prev + 1, mark.seq - 1
        return [
            Event(
                EventKind.NETWORK_GAP,
                now_ms,
                mark.gw,
                f"missing seq {first}..{last}" if last > first else f"missing seq {first}",
                {**detail, "missing_first": first, "missing_last": last},
            )
        ]
