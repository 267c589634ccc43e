"""A simulated DL/T 645 line on a pty and a gateway daemon polling it, in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio

from gateway.config import Config, parse_config
from gateway.daemon import Daemon, where_suspended
from simulator.dlt645.bus import Dlt645Bus
from simulator.meter.meter import SimMeter

ADDRESSES = ("000000000001", "000000000002")

CONFIG = """
[gateway]
name = "test-gw"
state_dir = "{state}"
shutdown_timeout = "5s"

[logging]
level = "warning"

[http]
port = 0

[sinks.local]
enabled = true

[poll_groups.fast]
interval = "1s"
quantities = ["energy_import_total_kwh", "voltage_l1_v"]

[[buses]]
name = "line-1"
protocol = "dlt645-2007"
serial = {{ port = "{port}", baud = 9600 }}
timeout = "200ms"
retries = 0
offline_after = 2
offline_backoff_max = "1s"

[[buses.meters]]
address = "{a1}"
poll = ["fast"]

[[buses.meters]]
address = "{a2}"
poll = ["fast"]
"""


def line_config(state: Path, port: str) -> Config:
    """A gateway polling the two simulated meters every second."""
    text = CONFIG.format(state=state, port=port, a1=ADDRESSES[0], a2=ADDRESSES[1])
    return parse_config(text, file=str(state / "gw.toml"), env={})


async def eventually(probe: Callable[[], Any], within: float = 15.0, what: str = "") -> Any:
    """Await ``probe()`` (a coroutine function) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within}s waiting for {what or probe}")
        await asyncio.sleep(0.1)


@dataclass
class Running:
    """The simulated line, the daemon and a client for its status API."""

    meters: dict[str, SimMeter]
    daemon: Daemon
    url: str
    http: aiohttp.ClientSession

    async def status(self) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/status") as r:
            assert r.status == 200
            doc: dict[str, Any] = await r.json()
            return doc

    async def meter(self, meter_id: str) -> dict[str, Any]:
        doc = await self.status()
        return next(m for m in doc["meters"] if m["meter"] == meter_id)


@pytest_asyncio.fixture
async def sim_line() -> AsyncIterator[tuple[dict[str, SimMeter], str]]:
    """Two DL/T 645-2007 meters on a pty; yields the meters and the device path."""
    meters = {a: SimMeter(a, seed=i) for i, a in enumerate(ADDRESSES)}
    bus = Dlt645Bus(meters.values(), "dlt645-2007", baud=9600, name="line-1")
    device = await bus.start_pty()
    try:
        yield meters, device
    finally:
        await bus.stop()


@pytest_asyncio.fixture
async def running(
    sim_line: tuple[dict[str, SimMeter], str], tmp_path: Path
) -> AsyncIterator[Running]:
    """The daemon polling ``sim_line``, its HTTP API on a free port."""
    meters, device = sim_line
    daemon = Daemon(line_config(tmp_path, device))
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(10):
            await daemon.started.wait()
        assert daemon.http is not None
        async with aiohttp.ClientSession() as http:
            yield Running(meters, daemon, daemon.http.url, http)
    finally:
        daemon.request_stop()
        done, _ = await asyncio.wait({task}, timeout=10)
        if not done:
            stuck = "\n".join(f"{t.get_name()}: {where_suspended(t)}" for t in asyncio.all_tasks())
            task.cancel()
            raise AssertionError(f"the daemon did not stop within 10 s; tasks:\n{stuck}")
        task.result()
