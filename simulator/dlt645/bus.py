"""A simulated RS-485 bus of DL/T 645 meters, over a pty or a TCP DTU.

Many meters share one line: each request is matched against every meter's
address (``AA`` digit pairs are wildcards; the full wildcard read-address
request is answered only on a single-meter bus, as real meters would
collide otherwise; broadcast time ``99..99`` sets every clock and gets no
reply; a request for an address nobody has gets no reply). The line is
half-duplex: requests are served one at a time, in order.

With ``emulate_timing`` a reply appears only when a real line could have
delivered it: the request's own wire time at the configured baud rate and
framing (11 bits per byte at 8E1, 10 at 8N1), then the meter's turnaround
(default 20 ms), then the reply's wire time. Without it, replies are
immediate (plus any ``slow`` fault delay).

Transports: :meth:`Dlt645Bus.start_pty` (the simulator keeps the master of a
pty pair; clients open the returned path or the link) and
:meth:`Dlt645Bus.start_tcp` (a transparent serial server: each TCP
connection carries the bus bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from protocols.dlt645 import (
    BROADCAST_ADDRESS,
    BroadcastTime,
    Decoder,
    Discarded,
    Frame,
    ReadAddress,
    RemoteDataError,
    Variant,
    parse_request,
)
from simulator.dlt645.responder import MeterResponder
from simulator.meter.faults import BUS_FAULTS, FaultSet
from simulator.meter.meter import SimMeter
from simulator.transport.pty import PtyEndpoint

log = logging.getLogger("simulator.dlt645")


def address_matches(pattern: str, address: str) -> bool:
    """True if a request address (``A`` digits are wildcards) selects ``address``."""
    if len(pattern) != len(address):
        return False
    return all(p in ("A", "a") or p == a for p, a in zip(pattern, address, strict=True))


class _Line:
    """One half-duplex connection to the bus (the pty, or one TCP client)."""

    def __init__(self, bus: Dlt645Bus, write: Callable[[bytes], None], name: str) -> None:
        self.bus = bus
        self.write = write
        self.name = name
        self.decoder = Decoder()
        self.queue: asyncio.Queue[tuple[Frame, float, int]] = asyncio.Queue()
        self.free_at = 0.0
        self._fed = 0
        self.task = asyncio.create_task(self._serve(), name=f"dlt645-{bus.name}-{name}")

    def feed(self, data: bytes) -> None:
        arrived = time.monotonic()
        self._fed += len(data)
        events = self.decoder.feed(data)
        frames = [e for e in events if isinstance(e, Frame)]
        self.bus.discarded += sum(1 for e in events if isinstance(e, Discarded))
        for frame in frames:
            # Bytes on the wire for this request: what arrived since the last
            # frame (wake-up bytes included), shared out if several came at once.
            wire = max(12 + len(frame.data), self._fed // len(frames))
            self.queue.put_nowait((frame, arrived, wire))
        if frames:
            self._fed = 0

    async def _serve(self) -> None:
        bus = self.bus
        while True:
            frame, arrived, wire = await self.queue.get()
            answer = bus.answer(frame)
            now = time.monotonic()
            if bus.emulate_timing:
                # The meter hears the request only once it has fully arrived.
                heard = max(arrived, self.free_at) + bus.wire_time(wire)
                self.free_at = heard
            else:
                heard = now
            if answer is None:
                continue
            data, extra = answer
            at = heard + extra
            if bus.emulate_timing:
                at += bus.turnaround + bus.wire_time(len(data))
                self.free_at = at
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if bus.dead:  # died while the meter was thinking
                continue
            self.write(data)
            bus.replies_sent += 1

    def close(self) -> None:
        self.task.cancel()


class Dlt645Bus:
    """DL/T 645 meters sharing one serial line.

    ``parity`` is ``"E"``, ``"O"`` or ``"N"``; with ``stopbits`` it sets the
    bits per byte for timing emulation. ``turnaround`` is the meter's reply
    delay in seconds (applied only with ``emulate_timing``).
    """

    def __init__(
        self,
        meters: Iterable[SimMeter],
        variant: str | Variant = "dlt645-2007",
        baud: int = 2400,
        parity: str = "E",
        emulate_timing: bool = False,
        turnaround: float = 0.02,
        *,
        stopbits: int = 1,
        name: str = "dlt645",
    ) -> None:
        self.variant = Variant(variant)
        self.name = name
        self.responders: dict[str, MeterResponder] = {}
        for meter in meters:
            if meter.address in self.responders:
                raise ValueError(f"bus {name}: meter address {meter.address} appears twice")
            if len(meter.address) != 12 or not meter.address.isdigit():
                raise ValueError(f"bus {name}: meter address {meter.address!r} is not 12 digits")
            self.responders[meter.address] = MeterResponder(meter, self.variant)
        if parity.upper() not in ("E", "O", "N"):
            raise ValueError(f"bus {name}: parity must be E, O or N, not {parity!r}")
        if baud <= 0:
            raise ValueError(f"bus {name}: baud must be > 0")
        self.baud = baud
        self.parity = parity.upper()
        self.stopbits = stopbits
        self.emulate_timing = emulate_timing
        self.turnaround = turnaround
        self.faults = FaultSet(BUS_FAULTS, f"bus {name}")
        self._dead = False
        self.requests_seen = 0
        """Request frames received, whatever their address."""
        self.functions_seen: Counter[int] = Counter()
        """Request frames received, by control code (0x11 read, 0x08 broadcast time...)."""
        self.time_broadcasts: list[datetime] = []
        """The times broadcast to the line (control 0x08 to ``99..99``), oldest first."""
        self.replies_sent = 0
        self.discarded = 0
        """Byte runs the decoder threw away (garbage, bad checksums)."""
        self.endpoints: list[str] = []
        self._ptys: list[PtyEndpoint] = []
        self._lines: list[_Line] = []
        self._servers: list[asyncio.Server] = []
        self._clients: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}

    # ------------------------------------------------------------------ state

    @property
    def meters(self) -> dict[str, SimMeter]:
        """Address -> meter."""
        return {a: r.meter for a, r in self.responders.items()}

    @property
    def dead(self) -> bool:
        """True while the whole bus is silent (set directly or by the ``dead`` fault)."""
        return self._dead or self.faults.get("dead") is not None

    @dead.setter
    def dead(self, value: bool) -> None:
        self._dead = value
        if not value:
            self.faults.clear("dead")

    def set_fault(self, fault: str, duration: float | None = None, **params: Any) -> None:
        """``dead``: the whole bus is silent, until cleared or for ``duration`` s."""
        self.faults.set(fault, duration, **params)

    def clear_faults(self, fault: str | None = None) -> None:
        self.faults.clear(fault)

    @property
    def bits_per_byte(self) -> int:
        return 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits

    def wire_time(self, nbytes: int) -> float:
        """Seconds ``nbytes`` take on the line at this baud rate and framing."""
        return nbytes * self.bits_per_byte / self.baud

    # -------------------------------------------------------------- protocol

    def answer(self, frame: Frame) -> tuple[bytes, float] | None:
        """The bytes the bus answers a frame with, and the extra delay; None for silence."""
        if frame.is_reply:
            return None  # another device's reply on the shared line
        self.requests_seen += 1
        self.functions_seen[frame.function] += 1
        if self.dead:
            return None
        try:
            request = parse_request(frame, self.variant)
        except RemoteDataError:
            return None
        if isinstance(request, BroadcastTime):
            if frame.address == BROADCAST_ADDRESS:
                self.time_broadcasts.append(request.when)
                for responder in self.responders.values():
                    responder.set_clock(request.when)
            return None
        if frame.address == BROADCAST_ADDRESS:
            return None
        if "A" in frame.address.upper():
            if isinstance(request, ReadAddress) and len(self.responders) != 1:
                return None  # every meter would answer at once: a collision
            chosen = [r for a, r in self.responders.items() if address_matches(frame.address, a)]
            if len(chosen) != 1:
                return None
            responder = chosen[0]
        else:
            found = self.responders.get(frame.address)
            if found is None:
                return None
            responder = found
        if responder.meter.fault("no_answer") is not None:
            return None
        reply = (
            responder.address_reply()
            if isinstance(request, ReadAddress)
            else responder.reply(request, frame.function)
        )
        answer = responder.on_the_line(reply)
        return answer.data, answer.delay

    # ------------------------------------------------------------- transports

    async def start_pty(self, link: str | Path | None = None) -> str:
        """Serve on a new pty; returns the path a client opens (the link if given)."""
        line: _Line | None = None

        def on_data(data: bytes) -> None:
            if line is not None:
                line.feed(data)

        pty = PtyEndpoint(on_data, link)
        line = _Line(self, pty.write, pty.device)
        self._ptys.append(pty)
        self._lines.append(line)
        self.endpoints.append(pty.device)
        log.info("bus_listening bus=%s pty=%s device=%s", self.name, pty.device, pty.path)
        return pty.device

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve as a transparent serial server on ``host:port``; returns the port."""
        server = await asyncio.start_server(self._on_client, host, port)
        self._servers.append(server)
        bound = int(server.sockets[0].getsockname()[1])
        self.endpoints.append(f"{host}:{bound}")
        log.info("bus_listening bus=%s tcp=%s:%d", self.name, host, bound)
        return bound

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        line = _Line(self, writer.write, f"tcp-{peer}")
        self._lines.append(line)
        task = asyncio.current_task()
        if task is not None:
            self._clients[writer] = task
        try:
            while data := await reader.read(65536):
                line.feed(data)
        except ConnectionError:
            pass
        finally:
            self._clients.pop(writer, None)
            line.close()
            with contextlib.suppress(ValueError):
                self._lines.remove(line)
            writer.close()

    async def stop(self) -> None:
        """Close every transport."""
        for server in self._servers:
            server.close()
        clients = list(self._clients.values())
        for writer in list(self._clients):
            writer.close()
        if clients:
            await asyncio.wait(clients, timeout=2.0)
        for line in self._lines:
            line.close()
        for pty in self._ptys:
            pty.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        self._servers.clear()
        self._lines.clear()
        self._ptys.clear()

    async def __aenter__(self) -> Dlt645Bus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
