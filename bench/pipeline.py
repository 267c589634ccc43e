"""Store-and-forward end to end: publisher -> Mosquitto -> metergw -> VictoriaMetrics.

Phases (each with real servers and metergw as its own process,
``python bench/_runner.py``):

1. sustained: a paho publisher (separate process) sends numbered concentrator
   batches as fast as QoS 1 allows; readings/s from the first publish until the
   InfluxDB sink's cursor has passed the last reading (all in VictoriaMetrics).
2. backlog: VictoriaMetrics down, 1M readings ingested and buffered (peak RSS of
   the metergw process), then VictoriaMetrics up: drain readings/s. Run twice:
   with the store-and-forward runner, and with the whole daemon (``metergw run``).
3. kill soak: kill -9 of metergw in a loop while a publisher sends; then loss
   (acknowledged points missing in VictoriaMetrics) and duplicates (messages
   stored twice in the buffer; repeated samples VictoriaMetrics still lists).

``--quick`` runs a short version. Prints a table, writes bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._publisher import PER_MSG  # noqa: E402
from tests.integration.helpers import prepare_session, write_config  # noqa: E402
from tests.servers import MosquittoServer, VictoriaMetricsServer, free_port  # noqa: E402

CLIENT_ID = "metergw-test-ingest"
PUBLISHER = ROOT / "bench" / "_publisher.py"
RUNNER = ROOT / "bench" / "_runner.py"
BATCH = int(os.environ.get("METERGW_BENCH_BATCH", "5000"))
"""Points per InfluxDB write (the sink's batch_size): memory per batch vs. requests."""


# -- the publisher process (bench/_publisher.py) -----------------------------------------


def start_publisher(
    broker: MosquittoServer, first: int, count: int, rate: float = 0
) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(PUBLISHER), str(broker.port), str(first), str(count), str(rate)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def publisher_result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# -- metergw as a process ----------------------------------------------------------------


DAEMON = [sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())", "run"]
"""``metergw run``: the whole daemon (status API, polling stack, status view)."""


def start_gateway(config: Path, log: Path, daemon: bool = False) -> subprocess.Popen[bytes]:
    # No MALLOC_* variables: metergw tunes glibc's allocator itself (gateway/runtime.py).
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    runner = DAEMON if daemon else [sys.executable, str(RUNNER)]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*runner, "-c", str(config)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def buffer_state(path: Path) -> tuple[int, int]:
    """(head sequence, influx cursor) read from the buffer file."""
    if not path.exists():
        return 0, 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            heads = [
                conn.execute("SELECT max(seq) FROM readings").fetchone()[0],
                conn.execute("SELECT max(seq) FROM events").fetchone()[0],
                (conn.execute("SELECT value FROM meta WHERE name='head'").fetchone() or [None])[0],
            ]
            cursor = conn.execute("SELECT seq FROM cursors WHERE sink='influx'").fetchone()
    except sqlite3.Error:
        return 0, 0
    head = max(int(h) for h in [*heads, 0] if h is not None)
    return head, int(cursor[0]) if cursor else 0


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.05) -> float:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)
    return time.monotonic()


def vm_points(vm: VictoriaMetricsServer) -> tuple[int, int]:
    """(distinct points, samples listed) of meter_value, streamed from the export API."""
    vm.force_flush()
    query = urllib.parse.urlencode({"match[]": '{__name__="meter_value"}'})
    distinct = listed = 0
    seen: set[tuple[str, int]] = set()
    with urllib.request.urlopen(f"{vm.url}/api/v1/export?{query}", timeout=300) as r:
        for line in r:
            s = json.loads(line)
            key = s["metric"]["meter"] + "|" + s["metric"]["quantity"]
            for ts in s["timestamps"]:
                listed += 1
                if (key, ts) not in seen:
                    seen.add((key, ts))
                    distinct += 1
    return distinct, listed


# -- phases ------------------------------------------------------------------------------


def phase_config(
    work: Path,
    name: str,
    broker: MosquittoServer,
    vm: VictoriaMetricsServer,
    client_id: str,
    **overrides: Any,
) -> tuple[Path, Path]:
    """Config file and state dir of one phase's gateway; its broker session made ready."""
    state = work / name
    settings: dict[str, Any] = {
        "batch_size": BATCH,
        "flush_interval": "100ms",
        "commit_interval": "20ms",
        **overrides,
    }
    config = write_config(
        work / f"{name}.toml",
        state_dir=state,
        mqtt_url=broker.url,
        influx_url=vm.url,
        client_id=client_id,
        **settings,
    )
    prepare_session(broker.host, broker.port, client_id, "meters/v1/+/readings")
    return config, state


def phase_sustained(
    work: Path, broker: MosquittoServer, vm: VictoriaMetricsServer, messages: int
) -> dict[str, Any]:
    config, state = phase_config(work, "s1", broker, vm, CLIENT_ID)
    gw = start_gateway(config, work / "s1.log")
    db = state / "buffer.sqlite"
    wait_for(db.exists, 30, "the buffer file")
    total = messages * PER_MSG
    pub = start_publisher(broker, 1, messages)
    t_ingested = wait_for(lambda: buffer_state(db)[0] >= total, 600, "ingest")
    t_done = wait_for(lambda: buffer_state(db)[1] >= total, 600, "delivery")
    published = publisher_result(pub)
    t0 = published["started"]  # the first publish, not the publisher's start-up
    rss = peak_rss_mb(gw.pid)
    gw.send_signal(signal.SIGTERM)
    gw.wait(timeout=30)
    distinct, _listed = vm_points(vm)
    return {
        "readings": total,
        "readings_per_message": PER_MSG,
        "publish_s": round(published["seconds"], 2),
        "ingest_readings_per_s": round(total / (t_ingested - t0)),
        "end_to_end_readings_per_s": round(total / (t_done - t0)),
        "in_tsdb": distinct,
        "lost": total - distinct,
        "peak_rss_mb": round(rss, 1),
    }


def phase_backlog(
    work: Path,
    broker: MosquittoServer,
    vm: VictoriaMetricsServer,
    readings: int,
    first: int,
    daemon: bool = False,
) -> dict[str, Any]:
    name = "s2d" if daemon else "s2"
    config, state = phase_config(work, name, broker, vm, f"metergw-bench-{name}")
    if daemon:  # its status API on a free port, not the default one
        config.write_text(config.read_text() + f"[http]\nport = {free_port()}\n")
    before, _ = vm_points(vm)
    vm.stop()
    gw = start_gateway(config, work / f"{name}.log", daemon)
    db = state / "buffer.sqlite"
    messages = readings // PER_MSG
    total = messages * PER_MSG
    pub = start_publisher(broker, first, messages)
    t_ingested = wait_for(lambda: buffer_state(db)[0] >= total, 900, "backlog ingest", 0.2)
    t0 = publisher_result(pub)["started"]
    rss_buffered = peak_rss_mb(gw.pid)
    bytes_on_disk = sum(p.stat().st_size for p in state.glob("buffer.sqlite*"))
    vm.start()
    t_up = time.monotonic()
    # Drain rate from the first confirmed write: the forwarder's backoff (up to 30 s
    # between attempts while the TSDB was down) is not the drain path's speed.
    t1 = wait_for(lambda: buffer_state(db)[1] > 0, 120, "the first write after the outage", 0.01)
    t_drained = wait_for(lambda: buffer_state(db)[1] >= total, 900, "drain", 0.05)
    rss_after = peak_rss_mb(gw.pid)
    gw.send_signal(signal.SIGTERM)
    gw.wait(timeout=30)
    after, _ = vm_points(vm)
    return {
        "readings": total,
        "ingest_readings_per_s_tsdb_down": round(total / (t_ingested - t0)),
        "buffer_bytes": bytes_on_disk,
        "peak_rss_mb_buffered": round(rss_buffered, 1),
        "peak_rss_mb_after_drain": round(rss_after, 1),
        "drain_readings_per_s": round(total / (t_drained - t1)),
        "drain_s": round(t_drained - t1, 2),
        "first_write_after_tsdb_up_s": round(t1 - t_up, 2),
        "lost": total - (after - before),
    }


def phase_kill(
    work: Path, broker: MosquittoServer, vm: VictoriaMetricsServer, cycles: int, first: int
) -> dict[str, Any]:
    config, state = phase_config(
        work, "s3", broker, vm, "metergw-bench-kill", batch_size=2000, flush_interval="50ms"
    )
    before, listed_before = vm_points(vm)
    rng = random.Random(11)
    rate = 100.0
    pub = start_publisher(broker, first, 10**6, rate)
    log = work / "s3.log"
    started = time.monotonic()
    for _ in range(cycles):
        gw = start_gateway(config, log)
        time.sleep(rng.uniform(0.4, 1.4))  # the kill lands anywhere, start-up included
        gw.send_signal(signal.SIGKILL)
        gw.wait()
    pub.send_signal(signal.SIGTERM)
    published = publisher_result(pub)
    soak_s = time.monotonic() - started
    total = published["acked"] * PER_MSG
    gw = start_gateway(config, log)
    db = state / "buffer.sqlite"
    wait_for(lambda: buffer_state(db)[1] >= total, 300, "final delivery", 0.2)
    head, _ = buffer_state(db)
    gw.send_signal(signal.SIGTERM)
    gw.wait(timeout=30)
    after, listed_after = vm_points(vm)
    return {
        "cycles": cycles,
        "soak_s": round(soak_s, 1),
        "messages_acked_by_broker": published["acked"],
        "readings": total,
        "lost": total - (after - before),
        "stored_twice_in_buffer": head - total,
        "replayed_samples_listed_by_vm": (listed_after - listed_before) - (after - before),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    sustained_msgs = 2_000 if args.quick else 10_000
    backlog = 200_000 if args.quick else 1_000_000
    cycles = 10 if args.quick else 100
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "sqlite": sqlite3.sqlite_version,
        },
        "quick": args.quick,
    }
    with tempfile.TemporaryDirectory(prefix="metergw-bench-") as tmp:
        work = Path(tmp)
        broker = MosquittoServer(work)
        vm = VictoriaMetricsServer(work)
        broker.start()
        vm.start()
        try:
            results["sustained"] = phase_sustained(work, broker, vm, sustained_msgs)
            print("sustained", results["sustained"], flush=True)
            results["backlog"] = phase_backlog(work, broker, vm, backlog, 10_000_000)
            print("backlog", results["backlog"], flush=True)
            results["backlog_daemon"] = phase_backlog(
                work, broker, vm, backlog, 15_000_000, daemon=True
            )
            print("backlog (metergw run)", results["backlog_daemon"], flush=True)
            results["kill_soak"] = phase_kill(work, broker, vm, cycles, 20_000_000)
            print("kill_soak", results["kill_soak"], flush=True)
        finally:
            broker.kill()
            vm.kill()
    rows = [
        (
            "end-to-end sustained",
            f"{results['sustained']['end_to_end_readings_per_s']:,} readings/s",
            ">= 100,000/s",
        ),
        (
            "ingest (to buffer commit)",
            f"{results['sustained']['ingest_readings_per_s']:,} readings/s",
            "",
        ),
        ("lost (sustained)", str(results["sustained"]["lost"]), "0"),
        (
            "backlog drain",
            f"{results['backlog']['drain_readings_per_s']:,} readings/s",
            ">= 200,000/s",
        ),
        (
            "peak RSS, backlog buffered",
            f"{results['backlog']['peak_rss_mb_buffered']} MB "
            f"({results['backlog']['readings']:,} readings)",
            "< 80 MB",
        ),
        ("lost (backlog)", str(results["backlog"]["lost"]), "0"),
        (
            "  the same, whole daemon",
            f"{results['backlog_daemon']['peak_rss_mb_buffered']} MB (metergw run)",
            "< 80 MB",
        ),
        (
            "kill -9 soak",
            f"{results['kill_soak']['cycles']} cycles, "
            f"{results['kill_soak']['readings']:,} readings",
            "",
        ),
        ("  lost", str(results["kill_soak"]["lost"]), "0"),
        ("  stored twice", str(results["kill_soak"]["stored_twice_in_buffer"]), "0"),
        (
            "  replays listed by VM",
            str(results["kill_soak"]["replayed_samples_listed_by_vm"]),
            "(same identity)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'metric'.ljust(width)}  {'measured':<40}  target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value:<40}  {target}")
    out = ROOT / "bench" / "results" / "pipeline.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
