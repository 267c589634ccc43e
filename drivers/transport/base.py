"""A byte-stream link shared by the serial and TCP transports.

One transaction at a time: the owner writes a request and reads bytes until
its decoder finds the reply or the deadline passes. The link reopens itself
on the next use after it was lost, with exponential backoff between failed
attempts so that a missing port costs almost nothing.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time

from drivers.errors import LinkError, Timeout

_CLOSE_WAIT = 2.0


class _Receiver(asyncio.Protocol):
    """Collects received bytes and wakes the reader."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.ready = asyncio.Event()
        self.lost: BaseException | None = None
        self.closed = False
        self.done = asyncio.Event()
        self.last_rx = 0.0

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.last_rx = time.monotonic()
        self.ready.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        self.ready.set()
        self.done.set()


class StreamTransport(abc.ABC):
    """Base of the serial and TCP transports (use as ``async with``)."""

    link: str
    """Port path or ``host:port``, for errors and logs."""

    def __init__(
        self,
        link: str,
        *,
        inter_frame_delay: float = 0.0,
        reopen_backoff: float = 0.05,
        reopen_backoff_max: float = 5.0,
    ) -> None:
        self.link = link
        self.inter_frame_delay = inter_frame_delay
        self._backoff_min = reopen_backoff
        self._backoff_max = max(reopen_backoff_max, reopen_backoff)
        self._backoff = 0.0
        self._next_open = 0.0
        self._transport: asyncio.BaseTransport | None = None
        self._rx: _Receiver | None = None
        self._last_activity = 0.0
        self.opens = 0
        """How many times the link was opened (reopens show as > 1)."""

    @abc.abstractmethod
    async def _connect(self, rx: _Receiver) -> asyncio.BaseTransport:
        """Open the underlying connection, delivering bytes to ``rx``."""

    @property
    def is_open(self) -> bool:
        return self._rx is not None and not self._rx.closed

    async def open(self) -> None:
        """Open the link if it is not open; raise :class:`LinkError` naming it.

        After a failed attempt, further attempts within the backoff window fail
        at once without touching the device.
        """
        if self.is_open:
            return
        self._drop()
        now = time.monotonic()
        if now < self._next_open:
            raise LinkError(
                f"{self.link}: unavailable, next attempt in {self._next_open - now:.1f} s",
                self.link,
            )
        rx = _Receiver()
        try:
            self._transport = await self._connect(rx)
        except Exception as exc:  # OSError, TimeoutError, serial.SerialException...
            self._backoff = min(max(self._backoff * 2, self._backoff_min), self._backoff_max)
            self._next_open = time.monotonic() + self._backoff
            raise LinkError(f"{self.link}: cannot open: {exc}", self.link) from exc
        self._rx = rx
        self._backoff = 0.0
        self.opens += 1

    def _drop(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._rx = None

    async def close(self) -> None:
        """Close the link and wait until it is released; the next :meth:`open` reopens it."""
        rx = self._rx
        self._drop()
        if rx is not None:
            # Serial ports close in a worker thread; the port stays locked until then.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_WAIT):
                    await rx.done.wait()

    async def reopen(self) -> None:
        """Close and open again (a bus probe after a fault)."""
        await self.close()
        await self.open()

    def _lost_error(self) -> LinkError:
        rx = self._rx
        why = f": {rx.lost}" if rx is not None and rx.lost else ""
        self._drop()
        return LinkError(f"{self.link}: link lost{why}", self.link)

    async def send(self, data: bytes) -> None:
        """Drop stale input, keep the inter-frame silence, then write ``data``."""
        await self.open()
        rx = self._rx
        if rx is None or self._transport is None:
            raise LinkError(f"{self.link}: not open", self.link)
        wait = self._last_activity + self.inter_frame_delay - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if rx.closed:
            raise self._lost_error()
        rx.buffer.clear()
        rx.ready.clear()
        self._transport.write(data)  # type: ignore[attr-defined]
        self._last_activity = time.monotonic()

    async def receive(self, deadline: float) -> bytes:
        """Bytes received so far, waiting until some arrive or ``deadline`` (monotonic).

        Raises :class:`Timeout` when nothing arrived by the deadline and
        :class:`LinkError` when the link was lost.
        """
        rx = self._rx
        if rx is None:
            raise LinkError(f"{self.link}: not open", self.link)
        while not rx.buffer:
            if rx.closed:
                raise self._lost_error()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"{self.link}: no reply")
            rx.ready.clear()
            # asyncio.timeout, not wait_for, which can swallow a cancel on 3.11.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await rx.ready.wait()
        data = bytes(rx.buffer)
        rx.buffer.clear()
        self._last_activity = rx.last_rx
        return data

    async def __aenter__(self) -> StreamTransport:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
