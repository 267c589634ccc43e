"""metergw as a process for bench/pipeline.py: configs, start and stop, what it reports.

A gateway is either the store-and-forward runner (bench/_runner.py) or the
whole daemon (``metergw run``); both serve ``/metrics`` on a free port, which
the bench reads for readings committed (``metergw_readings_accepted_total``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._measure import scrape, total
from tests.integration.helpers import prepare_session, write_config
from tests.servers import MosquittoServer, VictoriaMetricsServer, free_port

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "bench" / "_runner.py"
PUBLISHER = ROOT / "bench" / "_publisher.py"
DAEMON = [sys.executable, "-m", "gateway", "run"]
"""``metergw run``: the whole daemon (status API, polling stack, status view)."""
BATCH = int(os.environ.get("METERGW_BENCH_BATCH", "5000"))
"""Points per InfluxDB write (the sink's batch_size): memory per batch vs. requests."""
TOPIC = "meters/v1/+/readings"
SHARED_TOPIC = "$share/bench/meters/v1/+/readings"


class Stalled(Exception):
    """A gateway made no progress for too long (e.g. a poisoned buffer on this build)."""


@dataclass
class Gateway:
    """One metergw process of a phase: its process, config, buffer and metrics URL."""

    name: str
    config: Path
    state: Path
    log: Path
    metrics_port: int
    daemon: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def db(self) -> Path:
        return self.state / "buffer.sqlite"

    @property
    def client_id(self) -> str:
        return f"metergw-bench-{self.name}"

    def start(self) -> None:
        # No MALLOC_* variables: metergw tunes glibc's allocator itself (gateway/runtime.py).
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        if self.daemon:
            cmd = [*DAEMON, "-c", str(self.config)]
        else:
            cmd = [sys.executable, str(RUNNER), "-c", str(self.config)]
            cmd += ["--metrics-port", str(self.metrics_port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def answering(self) -> bool:
        """Its buffer file exists and its /metrics answers."""
        if not self.db.exists():
            return False
        try:
            scrape(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2)
        except OSError:
            return False
        return True

    def metrics(self) -> dict[str, float]:
        """Readings committed, payloads rejected, repeats, quarantined, and the sink's batches
        read from memory and from disk (0 before it answers)."""
        if self.proc is None or self.proc.poll() is not None:
            raise Stalled(f"{self.name} exited: {self.tail()}")
        try:
            s = scrape(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2)
        except OSError:
            return {"accepted": 0.0, "rejected": 0.0, "repeated": 0.0, "quarantined": 0.0}
        reads = "metergw_buffer_reads_total"
        return {
            "reads_memory": total(s, reads, source="memory") or 0.0,
            "reads_disk": total(s, reads, source="disk") or 0.0,
            "accepted": total(s, "metergw_readings_accepted_total", origin="concentrator") or 0.0,
            "rejected": total(s, "metergw_payloads_rejected_total") or 0.0,
            "repeated": total(s, "metergw_messages_repeated_total") or 0.0,
            "quarantined": total(s, "metergw_quarantined_total") or 0.0,
        }

    def tail(self, lines: int = 3) -> str:
        """The last log lines (what went wrong, when something did)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])[-600:]


def make_gateway(
    work: Path,
    name: str,
    broker: MosquittoServer,
    vm: VictoriaMetricsServer,
    *,
    daemon: bool = False,
    topic: str = TOPIC,
    **overrides: Any,
) -> Gateway:
    """A gateway's config file and state dir; its broker session made ready."""
    state = work / name
    client_id = f"metergw-bench-{name}"
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
    port = free_port()
    text = config.read_text()
    if topic != TOPIC:
        text = text.replace(
            f'client_id = "{client_id}" }}\n',
            f'client_id = "{client_id}" }}\ntopics = ["{topic}"]\n',
        )
    if daemon:  # its status API (and /metrics) on a free port, not the default one
        text += f"[http]\nport = {port}\n"
    config.write_text(text)
    prepare_session(broker.host, broker.port, client_id, topic)
    return Gateway(name, config, state, work / f"{name}.log", port, daemon)


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


def delivered(gw: Gateway) -> bool:
    """Everything the buffer holds has passed the InfluxDB sink's cursor."""
    head, cursor = buffer_state(gw.db)
    return cursor >= head


def concentrator_mark(path: Path, gw: str = "c1") -> int:
    """The last ``seq`` of concentrator ``gw`` the buffer committed (0: none yet)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT seq FROM concentrators WHERE gw=?", (gw,)).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


def clear_session(broker: MosquittoServer, client_id: str) -> None:
    """End a gateway's persistent session, so that later phases' messages are not queued
    for it (an offline session's queue costs the broker work and memory)."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    connected = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.on_connect = lambda *_: connected.set()
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        connected.wait(10)
    finally:
        c.disconnect()
        c.loop_stop()


def wait_accepted(gws: list[Gateway], want: int, timeout: float, stall_s: float = 20.0) -> float:
    """Until the gateways together committed ``want`` readings; raise Stalled if they stop."""
    deadline = time.monotonic() + timeout
    best, since = -1.0, time.monotonic()
    while True:
        got = sum(g.metrics()["accepted"] for g in gws)
        now = time.monotonic()
        if got >= want:
            return now
        if got > best:
            best, since = got, now
        elif now - since > stall_s:
            raise Stalled(f"no reading committed for {stall_s:g} s at {int(got):,} of {want:,}")
        if now > deadline:
            raise Stalled(f"timed out at {int(got):,} of {want:,} readings committed")
        # A scrape costs the gateway about 4 ms of its one busy core (py-spy, 2026-12-03):
        # ten a second took 4% of phase b's throughput. Two a second cost under 1% and
        # leave the ingest time within 0.5 s (under 3% of phase b's ~20 s).
        time.sleep(0.5)


def start_publisher(
    broker: MosquittoServer, first: int, count: int, rate: float = 0, *extra: str
) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(PUBLISHER), str(broker.port), str(first), str(count), str(rate)]
    return subprocess.Popen([*cmd, *extra], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def publisher_result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result
