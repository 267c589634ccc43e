"""Benchmark: backfill of 15-minute load-profile records on one 2400-baud DL/T 645 line.

30 meters share one simulated 2400-baud 8E1 line with the line's timing emulated
(11 bits a byte, the meter's turnaround). Each meter comes back from an outage
of ``--days`` (the scheduler resumes it from a last stored reading that long
ago), so the bus worker reads its daily freezes and every load-profile record
of the gap, a slice at a time, while it keeps polling every meter live at
``--live`` intervals. Measured:

    efficiency = wire time of every transaction in the run / wall time of the run

where the run ends when the last meter's gap is filled, and the wire time of a
transaction is its request and reply bytes at 2400 baud plus the turnaround
(the limit no implementation can beat). Target >= 85%. Live intervals missed
meanwhile: every tick of the live group with no poll of a meter started in it
(target 0), and the bus's own skipped/late tallies.

The issue's scale is 30 meters x 30 days: 86,400 standard DL/T 645-2007 records
(the simulator's are 81 bytes: blocks 1-4), one a request since a full record
(103 bytes) leaves no room for a second in a 200-byte reply, about 0.6 s of wire
each at 2400 baud, so some 14 h of load-profile wire time alone. The default run
is scaled down to ``--days 0.25``; the table projects the full-scale wire time
from the measured cost per record. It also counts the records read against those
in the gap (the reader has no request cap: a gap is read whole).
Prints a table and writes ``bench/results/backfill.json``.

    .venv/bin/python bench/backfill.py [--meters 30] [--days 0.25] [--live 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._measure import machine
from bench.bus import CountingTransport, Sink
from drivers.dlt645 import Dlt645Session
from gateway.buffer import WriteJob
from gateway.config import parse_config
from gateway.metrics import Metrics
from gateway.model import EventKind, Quality, TimeSource
from gateway.scheduler.bus import BusWorker
from gateway.scheduler.meters import build_meters
from gateway.southbound.dlt645.reader import _PROFILE_BATCH, Dlt645Reader
from protocols.dlt645 import LoadRecord, encode_load_record
from simulator.clock import SimClock
from simulator.dlt645.bus import Dlt645Bus
from simulator.meter.meter import LOAD_PROFILE_BLOCKS, SimMeter

BAUD = 2400
BITS_PER_BYTE = 11  # 8E1: start + 8 data + parity + stop
TURNAROUND = 0.02
TIMEOUT = 2.0
"""Sized for the line: a reply of one full load-profile record (103 bytes) is ~0.55 s of wire
at 2400 baud, and the session's deadline covers the whole reply. With the bus default
(0.5 s) such reads time out and a backfill recovers no load-profile record at all."""
RETRIES = 1
RECORDS_PER_DAY = 96
SIM_RECORD_BYTES = len(
    encode_load_record(LoadRecord(dt.datetime(2026, 1, 1), {}, LOAD_PROFILE_BLOCKS))
)
"""Bytes of one of the simulator's load-profile records (blocks 1-4: 81)."""
PROFILE_REPLY_MIN = 12 + 4 + SIM_RECORD_BYTES
"""Reply bytes from which a transaction is a load-profile read (frame + DI + a record):
live and clock reads and freezes answer with less."""
TARGET = 0.85


class RecordingSink(Sink):
    """The bench's write path (every job commits at once), keeping what a bench counts."""

    def __init__(self, meters: int) -> None:
        super().__init__()
        self.meters = meters
        self.all_filled = asyncio.Event()
        self.live: dict[str, list[int]] = {}
        """Meter -> start times (ms) of its live polls."""
        self.records: set[tuple[str, int]] = set()
        """(meter, ts_ms) of the backfilled records."""
        self.filled_at: dict[str, float] = {}
        """Meter -> monotonic time its gap was filled."""
        self.complete: dict[str, bool] = {}

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        for meter, key, _v, _u, ts_ms, ts_source, _r, _o, quality, _i in job.rows:
            if key != "energy_import_total_kwh":
                continue
            if quality & Quality.BACKFILLED:
                self.records.add((meter, ts_ms))
            elif ts_source == TimeSource.POLL:
                self.live.setdefault(meter, []).append(ts_ms)
        for e in job.events:
            if e.kind is EventKind.GAP_FILLED:
                self.filled_at[e.subject] = time.monotonic()
                self.complete[e.subject] = bool(e.detail.get("complete"))
                if len(self.filled_at) >= self.meters:
                    self.all_filled.set()
        return super().submit(job)


def config_text(path: str, meters: int, live_s: float) -> str:
    entries = "\n".join(
        f'[[buses.meters]]\naddress = "{n:012d}"\npoll = ["live"]\n' for n in range(1, meters + 1)
    )
    return f"""
[gateway]
timezone = "Asia/Shanghai"

[poll_groups.live]
interval = "{live_s:g}s"
quantities = ["energy_import_total_kwh"]

[[buses]]
name = "bench"
protocol = "dlt645-2007"
serial = {{ port = "{path}", baud = {BAUD}, parity = "E" }}
timeout = {TIMEOUT}
retries = {RETRIES}
clock_check_interval = "1h"

{entries}
"""


def missed_ticks(polls: list[int], start_ms: int, end_ms: int, interval_ms: int) -> int:
    """Ticks of the live group inside the run (aligned to the interval) with no poll."""
    missed = 0
    first = math.ceil(start_ms / interval_ms) * interval_ms
    for tick in range(first, end_ms - interval_ms + 1, interval_ms):
        if not any(tick <= p < tick + interval_ms for p in polls):
            missed += 1
    return missed


async def run(meters: int, days: float, live_s: float) -> dict[str, object]:
    clock = SimClock()
    history = max(2, math.ceil(days) + 2)
    sims = [
        SimMeter(f"{n:012d}", seed=n, clock=clock, history_days=history)
        for n in range(1, meters + 1)
    ]
    bus = Dlt645Bus(sims, baud=BAUD, parity="E", emulate_timing=True, turnaround=TURNAROUND)
    path = await bus.start_pty()
    cfg = parse_config(config_text(path, meters, live_s))
    bus_cfg = cfg.buses[0]
    transport = CountingTransport(path, baud=BAUD, parity="E")
    session = Dlt645Session(transport, timeout=TIMEOUT, retries=RETRIES)
    sink = RecordingSink(meters)
    runs = build_meters(bus_cfg, cfg.poll_groups, cfg.gateway.timezone)
    gap_from_ms = int((time.time() - days * 86_400) * 1000)
    for m in runs:  # as Scheduler.resume does after a restart: each first answer opens a gap
        m.health.last_ok_ms = gap_from_ms
        m.gap_pending = True
    worker = BusWorker(bus_cfg, runs, Dlt645Reader(session), sink, Metrics())
    t0 = time.monotonic()
    start_ms = int(time.time() * 1000)
    task = asyncio.create_task(worker.run())
    expected_wire = meters * (days * RECORDS_PER_DAY / _PROFILE_BATCH + 4) * 1.2
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sink.all_filled.wait(), 60 + 3 * expected_wire)
    t_end = max(sink.filled_at.values()) if len(sink.filled_at) == meters else time.monotonic()
    end_ms = start_ms + int((t_end - t0) * 1000)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bus.stop()

    wire_s = profile_s = 0.0
    answered = unanswered = 0
    for sent, replied, at in zip(transport.sent, transport.replied, transport.sent_at, strict=True):
        if at > t_end:
            break
        if replied:
            answered += 1
            wire = (sent + replied) * BITS_PER_BYTE / BAUD + TURNAROUND
            wire_s += wire
            if replied >= PROFILE_REPLY_MIN:
                profile_s += wire
        else:
            unanswered += 1
    wall_s = t_end - t0
    interval_ms = int(live_s * 1000)
    missed = sum(
        missed_ticks(sink.live.get(f"{n:012d}", []), start_ms, end_ms, interval_ms)
        for n in range(1, meters + 1)
    )
    tallies = worker.book.tallies
    records = len(sink.records)
    expected_records = int(days * RECORDS_PER_DAY) * meters
    full_records = 30 * 30 * RECORDS_PER_DAY
    per_record_s = profile_s / records if records else float("nan")
    return {
        "meters": meters,
        "days": days,
        "scaled_from": "30 meters x 30 days",
        "baud": BAUD,
        "framing": "8E1",
        "turnaround_s": TURNAROUND,
        "live_interval_s": live_s,
        "gaps_filled": len(sink.filled_at),
        "gaps_complete": sum(sink.complete.values()),
        "records_backfilled": records,
        "records_expected_about": expected_records,
        "transactions_answered": answered,
        "transactions_unanswered": unanswered,
        "wall_s": round(wall_s, 2),
        "wire_limit_s": round(wire_s, 2),
        "efficiency": round(wire_s / wall_s, 4) if wall_s else 0.0,
        "live_intervals_missed": missed,
        "live_polls_skipped": sum(t.skipped for t in tallies.values()),
        "live_polls_late": sum(t.late for t in tallies.values()),
        "load_profile_wire_s": round(profile_s, 2),
        "load_profile_wire_s_per_record": round(per_record_s, 4),
        "projected_full_scale_load_profile_wire_h": round(per_record_s * full_records / 3600, 1),
        "records_per_request": _PROFILE_BATCH,
        "record_bytes": SIM_RECORD_BYTES,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meters", type=int, default=30)
    p.add_argument("--days", type=float, default=0.25, help="length of each meter's gap")
    p.add_argument("--live", type=float, default=30.0, help="live poll interval (s)")
    args = p.parse_args()
    info = machine()
    result = asyncio.run(run(args.meters, args.days, args.live))
    result["machine"] = info
    width = max(len(k) for k in result)
    print(f"{'measure':<{width}}  value")
    for k, v in result.items():
        if k != "machine":
            print(f"{k:<{width}}  {v}")
    eff = float(result["efficiency"])  # type: ignore[arg-type]
    missed = int(result["live_intervals_missed"])  # type: ignore[call-overload]
    verdict = {True: "met", False: "NOT met"}
    read = int(result["records_backfilled"]) >= int(result["records_expected_about"])  # type: ignore[call-overload]
    print(f"{'target':<{width}}  efficiency >= {TARGET:.2f}: {verdict[eff >= TARGET]}")
    print(f"{'target':<{width}}  live intervals missed = 0: {verdict[not missed]}")
    print(f"{'check':<{width}}  every record of the gaps read: {verdict[read]}")
    print(f"{'load_avg_1m_at_start':<{width}}  {info['load_avg_1m_at_start']}")
    out = Path(__file__).resolve().parent / "results" / "backfill.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
