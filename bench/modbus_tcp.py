"""Benchmark: one Modbus TCP connection, 20 units x 10 float32 values, fast poll intervals.

The simulator's Modbus server (``metersim serve modbus``, pymodbus underneath)
serves 20 SDM630 units on one port. ``metergw run`` (its own process, a
generated config: one ``modbus-tcp`` bus, 20 meters, one poll group of 10
float32 quantities, no sink, status API on a free port) polls them at
1000/100/50/20/10 ms, each interval for a while. From ``/metrics`` and ``/proc``:

- polls/s made and datapoints/s kept (``metergw_readings_accepted_total{origin="poll"}``:
  readings committed to the buffer);
- due polls (wall-clock ticks in the window x 20 meters) against polls made;
  skipped polls from ``metergw_polls_skipped_total`` where this build exports it,
  and always computed as due - made;
- CPU (share of one core) and peak RSS of the metergw process, CPU of the server.

In the same run a bare pymodbus ``AsyncModbusTcpClient`` reads the same
registers (the same requests metergw's planner makes) of the 20 units
sequentially, as fast as it can, before and after the metergw runs: the
device's own limit (the better of the two is reported).

Targets: every due poll made at 100 ms (2,000 datapoints/s kept, 0 skipped); at
10 ms, datapoints/s within 80% of the device's limit (of what is due, 20,000/s,
when the device could do more: a schedule cannot be beaten). Prints a table, writes
``bench/results/modbus_tcp.json``.

    .venv/bin/python bench/modbus_tcp.py [--quick] [--seconds 12] [--intervals 1000,100,10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._measure import cpu_seconds, machine, peak_rss_mb, scrape, total, wait_for  # noqa: E402
from drivers.modbus import RegisterSpan, plan_reads  # noqa: E402
from protocols.modbus_profile import resolve_profile  # noqa: E402
from tests.servers import free_port  # noqa: E402

UNITS = 20
PROFILE = "sdm630"
QUANTITIES = (
    "voltage_l1_v",
    "voltage_l2_v",
    "voltage_l3_v",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "power_active_l1_kw",
    "power_active_l2_kw",
    "power_active_l3_kw",
    "power_factor_l1",
)
MAX_GAP = 12
"""The SDM630 map has 12 unused registers before power_factor_l1: one request per poll."""
INTERVALS_MS = (1000, 100, 50, 20, 10)


# -- the device -------------------------------------------------------------------------


def start_server(log: Path) -> tuple[subprocess.Popen[str], int]:
    """The simulator's Modbus TCP server with UNITS units; (process, port)."""
    units = [a for u in range(1, UNITS + 1) for a in ("--unit", str(u))]
    cmd = [sys.executable, "-m", "simulator.cli", "serve", "modbus", "--tcp", "127.0.0.1:0"]
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [*cmd, "--profile", PROFILE, *units], cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
            text=True,
        )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "name<TAB>protocol<TAB>host:port" once it listens
    if not line:
        proc.kill()
        raise RuntimeError(f"the Modbus simulator did not start: {log.read_text()[-2000:]}")
    return proc, int(line.rsplit(":", 1)[1])


def read_plan() -> list[tuple[int, int, int]]:
    """(function, address, count) of each request one poll of one meter makes."""
    profile = resolve_profile(PROFILE)
    spans = []
    for key in QUANTITIES:
        spec = profile.by_key(key)
        spans.append(RegisterSpan(key, spec.function, spec.address, spec.count))
    return [(b.function, b.address, b.count) for b in plan_reads(spans, max_gap=MAX_GAP)]


async def device_limit(port: int, seconds: float) -> dict[str, float]:
    """A bare pymodbus client polling every unit in turn as fast as it can."""
    from pymodbus.client import AsyncModbusTcpClient

    plan = read_plan()
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2)
    if not await client.connect():
        raise RuntimeError(f"cannot connect to the Modbus server on port {port}")
    polls = errors = 0
    try:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            for unit in range(1, UNITS + 1):
                for function, address, count in plan:
                    read = (
                        client.read_input_registers
                        if function == 4
                        else client.read_holding_registers
                    )
                    reply = await read(address, count=count, device_id=unit)
                    errors += reply.isError()
                polls += 1
        elapsed = time.monotonic() - started
    finally:
        client.close()
    return {
        "polls_per_s": round(polls / elapsed, 1),
        "requests_per_s": round(polls * len(plan) / elapsed, 1),
        "datapoints_per_s": round(polls * len(QUANTITIES) / elapsed, 1),
        "errors": errors,
    }


# -- metergw ----------------------------------------------------------------------------


def config_text(state: Path, device_port: int, http_port: int, interval_ms: int) -> str:
    meters = "".join(
        f'[[buses.meters]]\nunit = {u}\nprofile = "{PROFILE}"\npoll = ["fast"]\n\n'
        for u in range(1, UNITS + 1)
    )
    keys = ", ".join(f'"{k}"' for k in QUANTITIES)
    return (
        f'[gateway]\nname = "bench-modbus"\nstate_dir = "{state}"\n\n'
        '[logging]\nlevel = "warning"\nformat = "json"\n\n'
        f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n\n'
        f'[poll_groups.fast]\ninterval = "{interval_ms}ms"\nquantities = [{keys}]\n\n'
        '[[buses]]\nname = "mb"\nprotocol = "modbus-tcp"\n'
        f'tcp = {{ host = "127.0.0.1", port = {device_port} }}\nmax_gap = {MAX_GAP}\n\n' + meters
    )


def _counters(url: str) -> dict[str, float | None]:
    s = scrape(url)
    return {
        "polls": total(s, "metergw_polls_total", bus="mb"),
        "polls_ok": total(s, "metergw_polls_total", bus="mb", result="ok"),
        "readings": total(s, "metergw_readings_accepted_total", origin="poll"),
        "skipped": total(s, "metergw_polls_skipped_total", bus="mb"),
        "late": total(s, "metergw_polls_late_total", bus="mb"),
    }


def _delta(after: float | None, before: float | None) -> float | None:
    if after is None:
        return None
    return after - (before or 0.0)


def run_interval(
    work: Path, device_port: int, server_pid: int, interval_ms: int, seconds: float
) -> dict[str, Any]:
    """metergw polling every meter at ``interval_ms`` for ``seconds`` (after a warm-up)."""
    http_port = free_port()
    config = work / f"gw-{interval_ms}.toml"
    config.write_text(
        config_text(work / f"state-{interval_ms}", device_port, http_port, interval_ms)
    )
    url = f"http://127.0.0.1:{http_port}/metrics"
    with (work / f"gw-{interval_ms}.log").open("ab") as log:
        gw = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(config)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def polled_every_meter() -> bool:
            if gw.poll() is not None:
                raise RuntimeError(f"metergw exited with {gw.returncode}; see {log.name}")
            try:
                return (_counters(url)["polls"] or 0) >= UNITS
            except OSError:
                return False

        wait_for(polled_every_meter, 60, "metergw's first polls", 0.1)
        time.sleep(max(1.0, 2 * interval_ms / 1000))  # warm-up: past the first ticks
        before, cpu0, sim0, t0 = (
            _counters(url),
            cpu_seconds(gw.pid),
            cpu_seconds(server_pid),
            (time.time()),
        )
        time.sleep(seconds)
        after, cpu1, sim1, t1 = (
            _counters(url),
            cpu_seconds(gw.pid),
            cpu_seconds(server_pid),
            (time.time()),
        )
        rss = peak_rss_mb(gw.pid)
    finally:
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gw.kill()
            gw.wait()
    elapsed = t1 - t0
    interval = interval_ms / 1000
    due = (math.floor(t1 / interval) - math.floor(t0 / interval)) * UNITS
    made = int(_delta(after["polls"], before["polls"]) or 0)
    readings = _delta(after["readings"], before["readings"]) or 0.0
    skipped_metric = _delta(after["skipped"], before["skipped"])
    late = _delta(after["late"], before["late"])
    return {
        "interval_ms": interval_ms,
        "seconds": round(elapsed, 2),
        "polls_due": due,
        "polls_made": made,
        "polls_ok": int(_delta(after["polls_ok"], before["polls_ok"]) or 0),
        "polls_per_s": round(made / elapsed, 1),
        "datapoints_per_s": round(readings / elapsed, 1),
        "datapoints_due_per_s": round(due * len(QUANTITIES) / elapsed, 1),
        "skipped_due_minus_made": max(0, due - made),
        "skipped_metric": None if skipped_metric is None else int(skipped_metric),
        "late_metric": None if late is None else int(late),
        "cpu_share_of_one_core": round((cpu1 - cpu0) / elapsed, 3),
        "server_cpu_share_of_one_core": round((sim1 - sim0) / elapsed, 3),
        "peak_rss_mb": round(rss, 1),
    }


# -- report -----------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    limit = results["device_limit_datapoints_per_s"]
    head = (
        f"{'interval':>8} {'polls/s':>8} {'points/s':>9} {'due':>6} {'made':>6} "
        f"{'skipped':>8} {'metric':>7} {'of max':>7} {'CPU':>6} {'sim CPU':>8} {'RSS MB':>7}"
    )
    lines = [head]
    for r in results["intervals"]:
        metric = "-" if r["skipped_metric"] is None else str(r["skipped_metric"])
        lines.append(
            f"{r['interval_ms']:>6}ms {r['polls_per_s']:>8,.0f} {r['datapoints_per_s']:>9,.0f} "
            f"{r['polls_due']:>6} {r['polls_made']:>6} {r['skipped_due_minus_made']:>8} "
            f"{metric:>7} {r['datapoints_per_s'] / attainable(r, limit):>7.0%} "
            f"{r['cpu_share_of_one_core']:>6.0%} {r['server_cpu_share_of_one_core']:>8.0%} "
            f"{r['peak_rss_mb']:>7}"
        )
    runs = ", ".join(f"{d['polls_per_s']:,.0f}" for d in results["device_limit_runs"])
    lines.append(
        f"\ndevice limit (bare pymodbus client, sequential): {limit:,.0f} datapoints/s "
        f"({runs} polls/s: before, after)"
    )
    lines.append("skipped = due - made; metric = metergw_polls_skipped_total (-: not exported)")
    lines.append("of max = datapoints/s kept / min(datapoints/s due, the device's limit)")
    for name, (ok, text) in results["targets"].items():
        lines.append(f"target {name}: {'met' if ok else 'NOT met'} ({text})")
    return "\n".join(lines)


def attainable(row: dict[str, Any], device_limit: float) -> float:
    """The most datapoints/s an interval allows: what is due, or the device's limit."""
    return min(float(row["datapoints_due_per_s"]), device_limit)


def targets(results: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    by = {r["interval_ms"]: r for r in results["intervals"]}
    limit = results["device_limit_datapoints_per_s"]
    out: dict[str, tuple[bool, str]] = {}
    if 100 in by:
        r = by[100]
        # Window edges: a tick of 20 polls may fall either side, and a poll's readings are
        # counted when committed, a moment after the poll: allow one tick and 3%.
        ok = (
            r["polls_made"] >= r["polls_due"] - UNITS
            and not r["skipped_metric"]
            and r["datapoints_per_s"] >= 0.97 * r["datapoints_due_per_s"]
        )
        out["100 ms: every due poll made, 2,000 datapoints/s, 0 skipped"] = (
            ok,
            f"{r['polls_made']} of {r['polls_due']} made, {r['datapoints_per_s']:,.0f}/s, "
            f"skipped {r['skipped_metric'] if r['skipped_metric'] is not None else '-'}",
        )
    if 10 in by:
        r = by[10]
        share = r["datapoints_per_s"] / attainable(r, limit)
        out["10 ms: >= 80% of the device's limit (or of what is due, if less)"] = (
            share >= 0.8,
            f"{r['datapoints_per_s']:,.0f} of {attainable(r, limit):,.0f} points/s: {share:.0%}",
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per interval")
    parser.add_argument("--seconds", type=float, help="seconds per interval (default 12)")
    parser.add_argument(
        "--intervals",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(INTERVALS_MS),
        help="poll intervals in ms, comma separated (default 1000,100,50,20,10)",
    )
    args = parser.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 12.0)
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "units": UNITS,
        "quantities": list(QUANTITIES),
        "requests_per_poll": len(read_plan()),
    }
    with tempfile.TemporaryDirectory(prefix="metergw-bench-modbus-") as tmp:
        work = Path(tmp)
        server, port = start_server(work / "server.log")
        try:
            limits = [asyncio.run(device_limit(port, min(seconds, 5.0)))]
            print("device limit", limits[0], flush=True)
            rows = []
            for interval in args.intervals:
                row = run_interval(work, port, server.pid, interval, seconds)
                print(row, flush=True)
                rows.append(row)
            limits.append(asyncio.run(device_limit(port, min(seconds, 5.0))))
            print("device limit", limits[1], flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    results["device_limit_runs"] = limits
    results["device_limit_datapoints_per_s"] = max(d["datapoints_per_s"] for d in limits)
    results["intervals"] = rows
    results["targets"] = targets(results)
    print()
    print(table(results))
    out = ROOT / "bench" / "results" / "modbus_tcp.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
