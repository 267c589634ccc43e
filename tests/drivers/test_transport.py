"""Serial transport details: inter-frame silence and pty handling."""

from __future__ import annotations

import time

import pytest

from drivers.dlt645 import Dlt645Session
from drivers.transport import SerialTransport
from drivers.transport.serial import is_pty
from simulator import Dlt645Bus, SimClock, SimMeter

A1 = "000000000001"


@pytest.mark.asyncio
async def test_inter_frame_delay_keeps_the_line_silent_between_transactions() -> None:
    async with Dlt645Bus([SimMeter(A1, seed=1, clock=SimClock(speed=0))]) as sim:
        path = await sim.start_pty()
        assert is_pty(path)
        for delay, at_least, at_most in ((0.0, 0.0, 0.2), (0.15, 0.3, 1.0)):
            transport = SerialTransport(path, baud=2400, parity="E", inter_frame_delay=delay)
            s = Dlt645Session(transport, timeout=0.5, retries=0)
            await s.read(A1, 0x00010000)
            t0 = time.monotonic()
            await s.read(A1, 0x00010000)
            await s.read(A1, 0x00010000)
            took = time.monotonic() - t0
            assert at_least <= took <= at_most, (delay, took)
            await transport.close()
