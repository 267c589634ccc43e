"""DL/T 645 master session: one request and its reply at a time over a transport.

Replies that are not the one awaited (another meter's address, a bad
checksum, line noise, our own echo) are counted and discarded, and the
session keeps listening until the timeout: a noisy line never raises
anything but the typed errors of :mod:`drivers.errors`.
"""

from __future__ import annotations

import datetime
import time
from collections import Counter
from collections.abc import Callable

from drivers.errors import DeviceError, FrameError, Timeout
from drivers.transport.base import StreamTransport
from protocols.dlt645 import (
    WAKEUP,
    WILDCARD_ADDRESS,
    AddressReply,
    DataReply,
    Decoder,
    Discarded,
    ErrorReply,
    Frame,
    Value,
    Variant,
    broadcast_time_request,
    decode_datetime,
    decode_payload,
    format_di,
    parse_reply,
    read_address_request,
    read_followup_request,
    read_request,
)

WILDCARD = WILDCARD_ADDRESS
_MAX_FOLLOW_UPS = 32  # a reply carries <= 200 bytes; no real record set needs more

MAX_REPLY_FRAME_BYTES = 4 + 12 + 200
"""The longest reply frame: wake-up bytes, 12 bytes of framing, 200 bytes of data."""


class Dlt645Session:
    """Reads data identifiers from DL/T 645 meters over one transport."""

    def __init__(
        self,
        transport: StreamTransport,
        variant: Variant = Variant.V2007,
        *,
        timeout: float = 0.5,
        retries: int = 1,
        wakeup: bool = True,
        on_discard: Callable[[str], None] | None = None,
    ) -> None:
        self.transport = transport
        self.variant = variant
        self.timeout = timeout
        self.retries = retries
        self.wakeup = wakeup
        self.on_discard = on_discard
        self.discarded: Counter[str] = Counter()
        """Frames and bytes thrown away, by reason."""
        self.transactions = 0
        """Request frames sent (retries and follow-ups included)."""

    def _discard(self, reason: str) -> None:
        self.discarded[reason] += 1
        if self.on_discard is not None:
            self.on_discard(reason)

    def _sift(self, items: list[Frame | Discarded], address: str, di: int | None) -> Frame | None:
        """The reply from ``address`` (about ``di``) among ``items``; count and drop the rest."""
        di_length = 2 if self.variant == Variant.V1997 else 4
        for item in items:
            if isinstance(item, Discarded):
                self._discard(item.reason)
            elif not item.is_reply:
                self._discard("not a reply")
            elif address != WILDCARD and item.address != address:
                self._discard("wrong address")
            elif (
                di is not None
                and not item.is_abnormal
                and int.from_bytes(item.data[:di_length], "little") != di
            ):
                self._discard("unexpected data identifier")  # a late reply to an earlier request
            else:
                return item
        return None

    async def _transact(
        self,
        request: bytes,
        address: str,
        what: str,
        di: int | None = None,
        retries: int | None = None,
        reply_bytes: int = 0,
    ) -> Frame:
        """Send ``request`` (with retries) and return the first reply from ``address``.

        ``reply_bytes``: how long a reply may be; the wait is the session's timeout plus
        that many bytes on the wire, so that a long reply (a load-profile frame takes
        about a second at 2400 baud) is not cut off by a timeout sized for short ones."""
        attempts = (self.retries if retries is None else retries) + 1
        wait = self.timeout + reply_bytes * self._char_time()
        for _ in range(attempts):
            await self.transport.send((WAKEUP if self.wakeup else b"") + request)
            self.transactions += 1
            deadline = time.monotonic() + wait
            decoder = Decoder()
            try:
                while True:
                    data = await self.transport.receive(deadline)
                    found = self._sift(decoder.feed(data), address, di)
                    if found is not None:
                        return found
            except Timeout:
                # Bytes still held (a frame with a bad checksum waits for a
                # better end) are discarded now, and counted.
                self._sift(decoder.flush(), address, di)
                continue
        raise Timeout(
            f"meter {address} on {self.transport.link}: no reply to {what} "
            f"after {attempts} attempt{'s' if attempts > 1 else ''} of {self.timeout:g} s"
        )

    async def read(
        self,
        address: str,
        di: int,
        *,
        extra: bytes = b"",
        retries: int | None = None,
        long_reply: bool = False,
    ) -> bytes:
        """The payload of ``di`` (follow-up frames joined); raise a :class:`DriverError`.

        ``retries`` overrides the session's for this read (0 to probe a dead meter cheaply).
        ``long_reply``: the reply may fill whole frames (load-profile records): each frame
        is waited for as long as a full frame takes on the wire, on top of the timeout.
        """
        what = f"DI {format_di(di, self.variant)}"
        size = MAX_REPLY_FRAME_BYTES if long_reply else 0
        frame = await self._transact(
            read_request(address, di, self.variant, extra=extra), address, what, di, retries, size
        )
        payload = bytearray()
        for seq in range(1, _MAX_FOLLOW_UPS + 2):
            reply = self._data_reply(frame, address, di, what)
            payload += reply.payload
            if not reply.has_follow_up:
                return bytes(payload)
            if seq > _MAX_FOLLOW_UPS:
                break
            frame = await self._transact(
                read_followup_request(address, di, seq, self.variant),
                address,
                f"{what} follow-up",
                di,
                reply_bytes=size,
            )
        raise FrameError(f"meter {address}: {what}: more than {_MAX_FOLLOW_UPS} follow-up frames")

    def _char_time(self) -> float:
        # A serial line knows its speed; behind a TCP serial server (DTU) it is not known,
        # so the common meter default, 2400 baud 8E1, is assumed.
        char_time = getattr(self.transport, "char_time", None)
        return float(char_time()) if callable(char_time) else 11 / 2400

    def _data_reply(self, frame: Frame, address: str, di: int, what: str) -> DataReply:
        try:
            reply = parse_reply(frame, self.variant)
        except ValueError as exc:
            self._discard("malformed reply")
            raise FrameError(f"meter {address}: {what}: malformed reply: {exc}") from exc
        if isinstance(reply, ErrorReply):
            flags = reply.flags
            names = "|".join(f.name or "" for f in type(flags) if f in flags) or "none"
            raise DeviceError(f"meter {address}: error reply to {what}: {names}", int(flags))
        if not isinstance(reply, DataReply):
            self._discard("unexpected reply")
            raise FrameError(f"meter {address}: {what}: unexpected reply {reply!r}")
        if reply.di != di:
            self._discard("unexpected data identifier")
            raise FrameError(
                f"meter {address}: {what}: reply carries DI {format_di(reply.di, self.variant)}"
            )
        return reply

    async def read_values(
        self, address: str, di: int, *, retries: int | None = None
    ) -> list[Value]:
        """Decoded values of a value or block DI (one per member)."""
        payload = await self.read(address, di, retries=retries)
        try:
            return decode_payload(di, payload, self.variant)
        except ValueError as exc:
            raise FrameError(f"meter {address}: {exc}") from exc

    async def read_datetime(self, address: str, di: int) -> datetime.datetime:
        """A date, time or freeze-time DI as naive meter-local time."""
        payload = await self.read(address, di)
        try:
            return decode_datetime(di, payload)
        except ValueError as exc:
            raise FrameError(f"meter {address}: {exc}") from exc

    async def broadcast_time(self, when: datetime.datetime) -> None:
        """Set every meter's clock on the line to ``when`` (naive meter-local time).

        Broadcast time (control 0x08) to ``99..99``: no meter replies, so nothing
        is awaited; raise :class:`LinkError` if the bytes cannot be sent.
        """
        frame = broadcast_time_request(when)
        await self.transport.send((WAKEUP if self.wakeup else b"") + frame)
        self.transactions += 1

    async def read_address(self) -> str:
        """The address of the only meter on the line (wildcard read-address)."""
        frame = await self._transact(read_address_request(), WILDCARD, "read address")
        try:
            reply = parse_reply(frame, self.variant)
        except ValueError as exc:
            raise FrameError(f"read address: malformed reply: {exc}") from exc
        if isinstance(reply, AddressReply):
            return reply.address
        if isinstance(reply, ErrorReply):
            raise DeviceError(
                f"meter {frame.address}: error reply to read address", int(reply.flags)
            )
        raise FrameError(f"read address: unexpected reply {reply!r}")
