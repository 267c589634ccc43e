"""Benchmark: one DL/T 645 bus at 2400 baud 8E1, 30 meters, 10% of them dead.

The simulator emulates the line's timing (each byte 11 bits at 2400 baud, the
meter's turnaround), so the bus can do only so many transactions per second.
The limit is computed from what went over the wire: for every answered
transaction, request bytes + turnaround + reply bytes; dead meters
legitimately cost their timeouts (timeout x attempts, at their backoff).

    efficiency = wire time of the answered transactions / (run time - dead-meter time)

Target: >= 90%. Prints a table and writes ``bench/results/bus.json``.

    .venv/bin/python bench/bus.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.dlt645 import Dlt645Session
from drivers.transport import SerialTransport
from gateway.buffer import WriteJob
from gateway.config import parse_config
from gateway.metrics import Metrics
from gateway.model import Event
from gateway.scheduler.bus import BusWorker
from gateway.scheduler.meters import build_meters
from gateway.southbound.dlt645.reader import Dlt645Reader
from simulator.clock import SimClock
from simulator.dlt645.bus import Dlt645Bus
from simulator.meter.meter import SimMeter

METERS = 30
DEAD = 3
BAUD = 2400
TURNAROUND = 0.02
TIMEOUT = 0.5
RETRIES = 1


class CountingTransport(SerialTransport):
    """A serial transport that records the bytes of every request and its reply."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent: list[int] = []
        self.replied: list[int] = []
        """Bytes received in reply to each request (0: no reply)."""
        self.sent_at: list[float] = []

    async def send(self, data: bytes) -> None:
        await super().send(data)
        self.sent.append(len(data))
        self.replied.append(0)
        self.sent_at.append(time.monotonic())

    async def receive(self, deadline: float) -> bytes:
        data = await super().receive(deadline)
        if self.replied:
            self.replied[-1] += len(data)
        return data


class Sink:
    """The write path: counts what it is handed; every job commits at once."""

    healthy = True

    def __init__(self) -> None:
        self.readings = 0
        self.events: list[Event] = []

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        self.readings += len(job.rows)
        self.events.extend(job.events)
        fut: asyncio.Future[WriteJob] = asyncio.get_running_loop().create_future()
        fut.set_result(job)
        return fut


def config_text(path: str) -> str:
    meters = "\n".join(
        f'[[buses.meters]]\naddress = "{n:012d}"\npoll = ["energy"]\n' for n in range(1, METERS + 1)
    )
    return f"""
[poll_groups.energy]
interval = "1s"
quantities = ["energy_import_total_kwh", "energy_import_t1_kwh", "energy_import_t2_kwh",
              "energy_import_t3_kwh", "energy_import_t4_kwh"]

[[buses]]
name = "bench"
protocol = "dlt645-2007"
serial = {{ port = "{path}", baud = {BAUD}, parity = "E" }}
timeout = {TIMEOUT}
retries = {RETRIES}
offline_after = 2
offline_backoff_max = "60s"

{meters}
"""


async def run(seconds: float) -> dict[str, object]:
    clock = SimClock()
    sims = [SimMeter(f"{n:012d}", seed=n, clock=clock) for n in range(1, METERS + 1)]
    dead = {sims[i].address for i in range(0, METERS, METERS // DEAD)}
    for m in sims:
        if m.address in dead:
            m.set_fault("no_answer")
    bus = Dlt645Bus(sims, baud=BAUD, parity="E", emulate_timing=True, turnaround=TURNAROUND)
    path = await bus.start_pty()
    cfg = parse_config(config_text(path))
    bus_cfg = cfg.buses[0]
    transport = CountingTransport(path, baud=BAUD, parity="E")
    session = Dlt645Session(transport, timeout=TIMEOUT, retries=RETRIES)
    metrics = Metrics()
    sink = Sink()
    worker = BusWorker(
        bus_cfg,
        build_meters(bus_cfg, cfg.poll_groups, cfg.gateway.timezone),
        Dlt645Reader(session),
        sink,
        metrics,
    )
    t0 = time.monotonic()
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bus.stop()
    # The transaction in flight at the end is left out: the run ends where it began.
    elapsed = transport.sent_at[-1] - t0
    del transport.sent[-1], transport.replied[-1]

    bpb = 11  # 8E1: start + 8 data + parity + stop
    answered = sum(1 for r in transport.replied if r)
    unanswered = len(transport.sent) - answered
    out_bytes = sum(n for n, r in zip(transport.sent, transport.replied, strict=True) if r)
    wire_s = (out_bytes + sum(transport.replied)) * bpb / BAUD + answered * TURNAROUND
    dead_s = unanswered * TIMEOUT
    limit_tps = answered / wire_s * (elapsed - dead_s) / elapsed
    achieved_tps = answered / elapsed
    snapshot = worker.snapshot()
    live_polls = [len(m.polls) for m in worker.meters if m.meter_id not in dead]
    return {
        "meters": METERS,
        "dead_meters": len(dead),
        "baud": BAUD,
        "framing": "8E1",
        "turnaround_s": TURNAROUND,
        "timeout_s": TIMEOUT,
        "retries": RETRIES,
        "seconds": round(elapsed, 2),
        "transactions_answered": answered,
        "transactions_unanswered": unanswered,
        "wire_time_answered_s": round(wire_s, 3),
        "dead_meter_time_s": round(dead_s, 3),
        "achieved_tps": round(achieved_tps, 3),
        "limit_tps": round(limit_tps, 3),
        "efficiency": round(wire_s / (elapsed - dead_s), 4),
        "mean_transaction_wire_ms": round(wire_s / max(answered, 1) * 1000, 1),
        "readings": sink.readings,
        "min_polls_per_live_meter": min(live_polls),
        "max_polls_per_live_meter": max(live_polls),
        "bus_utilisation": round(snapshot.utilisation, 3),
        "meters_offline": sum(m.state == "offline" for m in snapshot.meters),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    result = asyncio.run(run(args.seconds))
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    width = max(len(k) for k in result)
    print(f"{'measure':<{width}}  value")
    for k, v in result.items():
        if k != "machine":
            print(f"{k:<{width}}  {v}")
    met = float(result["efficiency"]) >= 0.9  # type: ignore[arg-type]
    print(f"{'target':<{width}}  efficiency >= 0.90: {'met' if met else 'NOT met'}")
    out = Path(__file__).resolve().parent / "results" / "bus.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
