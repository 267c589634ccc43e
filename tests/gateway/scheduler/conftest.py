"""Fixtures for scheduler tests: an in-memory acceptor and a running scheduler."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

from gateway.buffer import WriteJob
from gateway.config import Config, parse_config
from gateway.metrics import Metrics
from gateway.model import Event, EventKind, Reading, reading_of
from gateway.scheduler import Scheduler
from simulator import SimMeter
from tests.servers import wait_until

ENERGY = [
    "energy_import_total_kwh",
    "energy_import_t1_kwh",
    "energy_import_t2_kwh",
    "energy_import_t3_kwh",
    "energy_import_t4_kwh",
]
ENERGY_1S = f"""
[poll_groups.energy]
interval = "1s"
quantities = {ENERGY}
"""


def addr(n: int) -> str:
    return f"{n:012d}"


class MemoryAcceptor:
    """The write path's interface (``submit``) kept in lists (a test double, not a server
    mock): every job commits at once."""

    healthy = True

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.events: list[Event] = []
        self.changed = asyncio.Event()

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        self.readings.extend(reading_of(values) for values in job.rows)
        self.events.extend(job.events)
        self.changed.set()
        fut: asyncio.Future[WriteJob] = asyncio.get_running_loop().create_future()
        fut.set_result(job)
        return fut

    def of(self, meter: str, key: str | None = None) -> list[Reading]:
        return [r for r in self.readings if r.meter == meter and (key is None or r.key == key)]

    def kinds(self, *kinds: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]


async def until(pred: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``pred`` with a deadline (never a bare sleep to wait for state)."""
    await asyncio.to_thread(lambda: None)  # let the loop run once
    deadline = asyncio.get_running_loop().time() + within
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def dlt_config(
    link: str,
    addresses: Sequence[str],
    *,
    groups: str,
    poll: Sequence[str],
    bus_extra: str = "",
    protocol: str = "dlt645-2007",
    timeout: float = 0.2,
) -> Config:
    """A one-bus DL/T 645 config on a pty path or ``tcp:HOST:PORT``."""
    if link.startswith("tcp:"):
        _, host, port = link.split(":")
        where = f'tcp = {{ host = "{host}", port = {port} }}'
    else:
        where = f'serial = {{ port = "{link}", baud = 2400, parity = "E" }}'
    meters = "\n".join(
        f'[[buses.meters]]\naddress = "{a}"\npoll = {list(poll)!r}\n' for a in addresses
    )
    text = f"""
[gateway]
name = "test"
timezone = "Asia/Shanghai"
{groups}

[[buses]]
name = "rs485-1"
protocol = "{protocol}"
{where}
timeout = {timeout}
retries = 0
{bus_extra}

{meters}
"""
    return parse_config(text.replace("'", '"'))


def energy_config(
    link: str, meters: Sequence[SimMeter], bus_extra: str = "", timeout: float = 0.2
) -> Config:
    """:func:`dlt_config` with every meter in the 1 s energy group."""
    return dlt_config(
        link,
        [m.address for m in meters],
        groups=ENERGY_1S,
        poll=["energy"],
        bus_extra=bus_extra,
        timeout=timeout,
    )


@asynccontextmanager
async def running(
    cfg: Config,
    acceptor: MemoryAcceptor,
    metrics: Metrics | None = None,
    last_stored: Mapping[str, int] | None = None,
) -> AsyncIterator[Scheduler]:
    """A scheduler running in a task for the duration of the block; ``last_stored``
    is handed to :meth:`Scheduler.resume` first."""
    sched = Scheduler(cfg, acceptor, metrics or Metrics())
    if last_stored is not None:
        sched.resume(last_stored)
    task = asyncio.create_task(sched.run())
    await asyncio.wait_for(sched.started.wait(), 5)
    try:
        yield sched
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = ["MemoryAcceptor", "dlt_config", "running", "until", "wait_until"]
