"""Clients for the simulator tests: they talk to it from the outside, as a gateway would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import tty
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from protocols.dlt645 import Decoder, Discarded, Frame
from simulator import SimClock

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


@pytest.fixture
def clock() -> SimClock:
    """A frozen sim clock the test steps by hand."""
    return SimClock(start=START, speed=0)


class BusClient:
    """A DL/T 645 master on a byte stream: send a request, collect decoder events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = Decoder()

    async def exchange(
        self, request: bytes, within: float = 1.0
    ) -> tuple[list[Frame | Discarded], float]:
        """Send ``request``; return the events up to the first frame (or timeout), and the time."""
        self.writer.write(request)
        t0 = time.monotonic()
        events: list[Frame | Discarded] = []
        deadline = t0 + within
        while not any(isinstance(e, Frame) for e in events):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                data = await asyncio.wait_for(self.reader.read(4096), left)
            except TimeoutError:
                break
            if not data:
                break
            events += self.decoder.feed(data)
        return events, time.monotonic() - t0

    async def frame(self, request: bytes, within: float = 1.0) -> Frame | None:
        events, _ = await self.exchange(request, within)
        frames = [e for e in events if isinstance(e, Frame)]
        return frames[0] if frames else None

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def tcp_client(port: int) -> BusClient:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return BusClient(reader, writer)


@contextlib.asynccontextmanager
async def pty_client(path: str) -> AsyncIterator[BusClient]:
    """Open a pty device the way a serial driver would (raw), as asyncio streams."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    file = os.fdopen(fd, "r+b", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), file)
    wfile = os.fdopen(os.dup(fd), "wb", buffering=0)
    wtransport, wprotocol = await loop.connect_write_pipe(asyncio.Protocol, wfile)
    writer = asyncio.StreamWriter(wtransport, wprotocol, reader, loop)
    try:
        yield BusClient(reader, writer)
    finally:
        wtransport.close()
        transport.close()


async def eventually(predicate: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` on the event loop until true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within}s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


class Subscriber:
    """A paho subscriber in its own thread, persistent session, auto-reconnecting."""

    def __init__(self, port: int, topic: str = "meters/v1/#") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}", clean_session=False
        )
        self.client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]
        self.client.on_message = self._on_message
        self.subscribed = 0
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _on_subscribe(self, *args: Any) -> None:
        self.subscribed += 1

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def payloads(self, suffix: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
