"""kill -9 of the gateway in a loop while a concentrator publishes: nothing acked is lost.

Every message the broker acknowledged to the publisher must end in
VictoriaMetrics exactly once per point, and the buffer must have stored each
message exactly once (its sequence count equals the readings sent).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.gateway.ingest.payloads import batch, encode
from tests.integration.helpers import Publisher, prepare_session, write_config
from tests.servers import MosquittoServer, VictoriaMetricsServer, wait_until

ROOT = Path(__file__).resolve().parents[2]
CYCLES = int(os.environ.get("METERGW_KILL_CYCLES", "20"))
METERS, POINTS = 2, 4
TOPIC = "meters/v1/c1/readings"


def start_gateway(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "_runner.py"), "-c", str(config)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


class SteadyPublisher(threading.Thread):
    """Publishes numbered messages until stopped; counts those the broker acknowledged."""

    def __init__(self, broker: MosquittoServer, rate: float) -> None:
        super().__init__(daemon=True)
        self.pub = Publisher(broker.host, broker.port)
        self.rate = rate
        self.acked = 0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        seq = 0
        while not self.stop_flag.is_set():
            seq += 1
            body = batch(seq=seq, meters=METERS, points=POINTS, base=seq * METERS)
            self.pub.publish(TOPIC, encode(body))
            self.acked = seq
            self.stop_flag.wait(1 / self.rate)
        self.pub.close()


def points(vm: VictoriaMetricsServer) -> dict[tuple[str, str, int], list[float]]:
    """(meter, quantity, ts) -> every sample VictoriaMetrics returns for it."""
    out: dict[tuple[str, str, int], list[float]] = {}
    for s in vm.export('{__name__="meter_value"}'):
        for ts, v in zip(s["timestamps"], s["values"], strict=True):
            out.setdefault((s["metric"]["meter"], s["metric"]["quantity"], ts), []).append(v)
    return out


def buffer_head(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        heads = [
            conn.execute("SELECT max(seq) FROM readings").fetchone()[0],
            conn.execute("SELECT max(seq) FROM events").fetchone()[0],
            (conn.execute("SELECT value FROM meta WHERE name='head'").fetchone() or [None])[0],
        ]
    return max(int(h) for h in [*heads, 0] if h is not None)


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_kill_9_in_a_loop_loses_and_repeats_nothing(
    tmp_path: Path, mosquitto: MosquittoServer, victoria_metrics: VictoriaMetricsServer
) -> None:
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "gw.toml",
        state_dir=state,
        mqtt_url=mosquitto.url,
        influx_url=victoria_metrics.url,
        batch_size=500,
    )
    log = tmp_path / "gateway.log"
    prepare_session(mosquitto.host, mosquitto.port, "metergw-test-ingest", "meters/v1/+/readings")
    rng = random.Random(7)
    publisher = SteadyPublisher(mosquitto, rate=150)
    publisher.start()
    try:
        for _cycle in range(CYCLES):
            proc = start_gateway(config, log)
            # Chaos interval, not a wait for state: the kill lands anywhere, start-up included.
            time.sleep(rng.uniform(0.4, 1.4))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    finally:
        publisher.stop_flag.set()
        publisher.join(timeout=30)
    sent = publisher.acked
    expected = sent * METERS * POINTS
    proc = start_gateway(config, log)
    try:
        wait_until(
            lambda: len(points(victoria_metrics)) >= expected,
            timeout=60,
            interval=0.5,
            what=f"{expected} points in VictoriaMetrics",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        # 0 after a clean shutdown; -SIGTERM if it came while Python was still starting.
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM), log.read_text()[-3000:]
    seen = points(victoria_metrics)
    assert len(seen) == expected, f"{len(seen)} distinct points, expected {expected}"
    # A batch replayed after a kill carries the same identity and value: VictoriaMetrics
    # may list the repeat until its next background merge deduplicates it (InfluxDB
    # overwrites at once). Same identity, same value: the point is counted once.
    assert all(len(set(values)) == 1 for values in seen.values())
    meters = {m for m, _, _ in seen}
    assert meters == {f"dlt645-2007:{a:012d}" for a in range(METERS, (sent + 1) * METERS)}
    # Each message stored exactly once: the only events are message_repeated (a message
    # the broker sent again after a kill, recognised by its content and not stored; the
    # buffer counts them for good), and every other buffer row is one reading; no seq
    # gap or restart was seen.
    kinds = {
        s["metric"]["kind"] for s in victoria_metrics.export('{__name__="metergw_event_value"}')
    }
    assert kinds <= {"message_repeated"}
    with sqlite3.connect(state / "buffer.sqlite") as conn:
        row = conn.execute("SELECT value FROM meta WHERE name='repeats'").fetchone()
    repeats = int(row[0]) if row else 0
    assert buffer_head(state / "buffer.sqlite") == expected + repeats
