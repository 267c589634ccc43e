"""Stage ceilings of the store-and-forward path, measured in the same run as metergw.

What each stage allows before our code adds anything, on this machine and
disk, with the same data shapes as the phase measuring metergw:

- SQLite group commit: rows of the buffer's shape (its own schema and open
  settings: WAL, ``synchronous=FULL``) inserted with ``executemany``, 1,000 and
  5,000 rows per transaction;
- the TSDB: influxdb-client writing one joined line-protocol string per batch
  (the InfluxDB sink's own line builder) to the phase's VictoriaMetrics;
- the broker: the bench's publisher to a plain paho QoS 1 subscriber
  (bench/_subscriber.py), same payloads, on a topic no gateway session holds.

Each returns readings per second (messages x readings per message for the broker).
``with_ceilings`` puts a phase's figure against them, and against what the machine's
cores allow (``cores_bound``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._publisher import POPULATION, T0
from gateway.buffer.rows import READING_COLUMNS, ReadingRow
from gateway.buffer.schema import connect_writer
from gateway.forward.lineproto import reading_lines
from tests.gateway.ingest.payloads import KEYS
from tests.servers import MosquittoServer, VictoriaMetricsServer

ROOT = Path(__file__).resolve().parents[1]
_T0_MS = int(T0.timestamp() * 1000)


def _rows(first: int, n: int) -> list[ReadingRow]:
    """``n`` readings shaped like the concentrator ingest's, seqs from ``first``."""
    now = int(time.time() * 1000)
    return [
        (
            first + i,
            f"dlt645-2007:{(i // 4) % POPULATION:012d}",
            KEYS[i % 4],
            f"{1000 + i / 100:.2f}",
            "kWh",
            _T0_MS + (first + i) // 100 * 1000,
            "concentrator",
            now,
            "c1",
            0,
            None,
        )
        for i in range(n)
    ]


def sqlite_commit(work: Path, seconds: float = 2.0) -> dict[str, Any]:
    """Rows/s committed per transaction size; ``readings_per_s`` is the best."""
    out: dict[str, Any] = {}
    for per_txn in (1000, 5000):
        path = work / f"ceiling-{per_txn}.sqlite"
        conn = connect_writer(str(path))
        columns = ",".join(READING_COLUMNS[1:])  # the seq is SQLite's rowid: assigned in order
        sql = f"INSERT INTO readings({columns}) VALUES ({','.join('?' * len(READING_COLUMNS[1:]))})"
        batches = [[r[1:] for r in _rows(1 + b * per_txn, per_txn)] for b in range(10)]
        done, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            conn.execute("BEGIN")
            conn.executemany(sql, batches[(done // per_txn) % len(batches)])
            conn.execute("COMMIT")
            done += per_txn
        out[f"rows_per_s_{per_txn}_per_txn"] = round(done / (time.monotonic() - started))
        conn.close()
        for p in work.glob(f"ceiling-{per_txn}.sqlite*"):
            p.unlink()
    out["readings_per_s"] = max(v for k, v in out.items() if k.startswith("rows_per_s"))
    return out


def tsdb_write(
    vm: VictoriaMetricsServer, seconds: float = 2.0, batch: int = 5000
) -> dict[str, Any]:
    """Samples/s VictoriaMetrics takes from influxdb-client, one joined string per batch."""
    from influxdb_client import InfluxDBClient, WritePrecision  # type: ignore[attr-defined]
    from influxdb_client.client.write_api import SYNCHRONOUS

    bodies = [
        "\n".join(reading_lines("bench_ceiling", _rows(1 + b * batch, batch))) for b in range(100)
    ]
    with InfluxDBClient(url=vm.url, token="t", org="o", timeout=30_000) as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        api.write(bucket="b", org="o", record=bodies[0], write_precision=WritePrecision.MS)
        done, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            body = bodies[(done // batch) % len(bodies)]
            api.write(bucket="b", org="o", record=body, write_precision=WritePrecision.MS)
            done += batch
        elapsed = time.monotonic() - started
    return {"readings_per_s": round(done / elapsed), "batch": batch}


def broker_qos1(
    broker: MosquittoServer, count: int, meters: int, points: int, hostile_every: int = 0
) -> dict[str, Any]:
    """Messages/s from the bench's publisher to a plain paho QoS 1 subscriber."""
    topic = "bench/ceiling/readings"
    total = count + (count // hostile_every if hostile_every else 0)
    sub = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "_subscriber.py"), str(broker.port), topic,
         str(total)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert sub.stdout is not None
    if sub.stdout.readline().strip() != "ready":
        sub.kill()
        raise RuntimeError("the ceiling subscriber did not subscribe")
    cmd = [sys.executable, str(ROOT / "bench" / "_publisher.py"), str(broker.port), "1"]
    cmd += [str(count), "0", "--meters", str(meters), "--points", str(points), "--topic", topic]
    cmd += ["--hostile-every", str(hostile_every)]
    pub = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    published = json.loads(pub.stdout.strip().splitlines()[-1])
    out, _ = sub.communicate(timeout=600)
    got = json.loads(out.strip().splitlines()[-1])
    elapsed = got["last"] - published["started"]
    per_s = total / elapsed
    return {
        "messages_per_s": round(per_s),
        "readings_per_s": round(count * meters * points / elapsed),
        "received": got["received"],
        "messages": total,
    }


def tightest(ceilings: dict[str, dict[str, Any]]) -> tuple[str, float]:
    """(stage, readings/s) of the lowest ceiling."""
    name = min(ceilings, key=lambda k: ceilings[k]["readings_per_s"])
    return name, float(ceilings[name]["readings_per_s"])


def with_ceilings(result: dict[str, Any], stages: dict[str, Any]) -> dict[str, Any]:
    """A phase's ``result`` with its stage ceilings, its share of the tightest, and the
    cores' bound."""
    stage, limit = tightest(stages)
    return {
        **result,
        "ceilings": stages,
        "tightest_stage": stage,
        "share_of_tightest": round(result["end_to_end_readings_per_s"] / limit, 3),
        "cores": cores_bound(result, stages, limit),
    }


NOT_GATEWAY = ("broker", "tsdb", "publisher")


def cores_bound(result: dict[str, Any], stages: dict[str, Any], limit: float) -> dict[str, Any]:
    """What this machine's cores allow, from the CPU each process spent per reading.

    The stage ceilings are measured one stage at a time with the machine to itself; in
    the pipeline every process shares the same cores. ``all_busy`` is the rate at which
    the cores would be full at the CPU per reading measured (so the share reached says
    how much of the machine the run used). ``best_possible`` is the rate if the gateway
    did nothing but the ceiling's bare SQLite insert, and the broker, the TSDB and the
    publisher spent what they spent here: an upper bound for any gateway on this box.
    """
    cores = os.cpu_count() or 1
    us = result["cpu_ms_per_1k_readings"]  # ms per 1,000 readings = us per reading
    total = sum(us.values())
    others = sum(v for k, v in us.items() if k in NOT_GATEWAY)
    out: dict[str, Any] = {"cores": cores}
    if total > 0:
        out["all_busy_readings_per_s"] = round(cores * 1e6 / total)
        out["share_of_all_busy"] = round(
            result["end_to_end_readings_per_s"] / out["all_busy_readings_per_s"], 3
        )
    sqlite = stages.get("sqlite_group_commit")
    if sqlite is not None and sqlite["readings_per_s"] > 0:
        best = cores * 1e6 / (others + 1e6 / sqlite["readings_per_s"])
        out["best_possible_readings_per_s"] = round(best)
        out["best_possible_share_of_tightest"] = round(best / limit, 3)
    return out
