"""Benchmark of the meter simulator: a 2,000-meter fleet and a concentrator at full speed.

1. The fleet of ``config/sim/fleet-2000.toml`` (TCP ports made ephemeral) runs in
   its own ``metersim run`` process. Its CPU and RSS are measured idle, then
   while this process drives every DL/T 645 bus with a simple master loop
   (one TCP connection per bus, sequential reads of 00010000).
2. One ``metersim serve concentrator`` process with 2,000 meters publishes as
   fast as it can (``--rate 0``) to a real Mosquitto started here; a subscriber
   counts what arrives. Target: >= 50,000 readings/s.

Prints a table and writes ``bench/results/simulator.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from protocols.concentrator import parse_readings  # noqa: E402
from protocols.dlt645 import Decoder, Frame, read_request  # noqa: E402
from tests.servers import MosquittoServer  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
DRIVE_SECONDS = 5.0
PUBLISH_SECONDS = 10.0
BATCH = 500
POINTS_PER_READING = 6


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def metersim(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "simulator.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def fleet_file(tmp: Path, broker_port: int) -> Path:
    """fleet-2000.toml with ephemeral ports and the bench's broker."""
    doc = tomllib.loads((ROOT / "config/sim/fleet-2000.toml").read_text())
    lines = ["[simulation]", "seed = 2000", "", "[control]", "port = 0", ""]
    for bus in doc["dlt645"]:
        for n in range(bus["repeat"]):
            first = int(bus["first"]) + n * bus["count"]
            lines += ["[[dlt645]]", f'name = "{bus["name"]}-{n + 1}"', 'tcp = "127.0.0.1:0"',
                      f'first = "{first:012d}"', f"count = {bus['count']}", ""]  # fmt: skip
    for mb in doc["modbus"]:
        for n in range(mb["repeat"]):
            lines += ["[[modbus]]", f'name = "{mb["name"]}-{n + 1}"', 'tcp = "127.0.0.1:0"',
                      f'profile = "{mb["profile"]}"', f"units = {mb['units']}", ""]  # fmt: skip
    for conc in doc["concentrator"]:
        lines += ["[[concentrator]]", f'gw = "{conc["gw"]}"', f'broker = "127.0.0.1:{broker_port}"',
                  f"meters = {conc['meters']}", f'first = "{conc["first"]}"',
                  f"interval = {conc['interval']}", f"batch = {conc['batch']}",
                  f"repeat = {conc['repeat']}", ""]  # fmt: skip
    path = tmp / "fleet.toml"
    path.write_text("\n".join(lines))
    return path


async def drive(buses: dict[str, tuple[int, list[str]]], seconds: float) -> tuple[int, int]:
    """One master per bus reading 00010000 of each meter in turn; (replies, timeouts)."""
    replies = timeouts = 0
    deadline = time.monotonic() + seconds

    async def master(port: int, addresses: list[str]) -> None:
        nonlocal replies, timeouts
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        decoder = Decoder()
        i = 0
        while time.monotonic() < deadline:
            writer.write(read_request(addresses[i % len(addresses)], 0x00010000))
            i += 1
            try:
                while not any(isinstance(e, Frame) for e in decoder.feed(
                        await asyncio.wait_for(reader.read(4096), 1.0))):  # fmt: skip
                    pass
                replies += 1
            except TimeoutError:
                timeouts += 1
        writer.close()

    await asyncio.gather(*(master(port, addrs) for port, addrs in buses.values()))
    return replies, timeouts


def bench_fleet(tmp: Path, broker_port: int) -> dict[str, Any]:
    proc = metersim("run", str(fleet_file(tmp, broker_port)))
    assert proc.stdout is not None
    started = time.monotonic()
    endpoints = []
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("metersim run exited early")
        endpoints.append(line.strip().split("\t"))
        if endpoints[-1][0] == "control":
            break
    startup = time.monotonic() - started
    buses: dict[str, tuple[int, list[str]]] = {}
    for name, proto, where in endpoints:
        if proto == "dlt645-2007-tcp":
            n = int(name.rsplit("-", 1)[1]) - 1
            first = 10001 + n * 40
            buses[name] = (int(where.rsplit(":", 1)[1]), [f"{first + k:012d}" for k in range(40)])
    try:
        time.sleep(1.0)  # let start-up work settle before measuring idle
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(3.0)
        idle_cpu = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)
        idle_rss = rss_mib(proc.pid)
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        replies, timeouts = asyncio.run(drive(buses, DRIVE_SECONDS))
        elapsed = time.monotonic() - t0
        busy_cpu = (cpu_seconds(proc.pid) - c0) / elapsed
        busy_rss = rss_mib(proc.pid)
    finally:
        rc = stop(proc)
    return {
        "meters": 2000,
        "dlt645_buses": len(buses),
        "startup_s": round(startup, 2),
        "idle_cpu_percent": round(100 * idle_cpu, 1),
        "idle_rss_mib": round(idle_rss, 1),
        "serving_requests_per_s": round(replies / elapsed),
        "serving_timeouts": timeouts,
        "serving_cpu_percent": round(100 * busy_cpu, 1),
        "serving_rss_mib": round(busy_rss, 1),
        "cpu_ms_per_request": round(1000 * busy_cpu * elapsed / max(1, replies), 3),
        "exit_code": rc,
    }


class Counter:
    """A paho subscriber counting readings messages and bytes."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.lock = threading.Lock()
        self.messages = 0
        self.bytes = 0
        self.sample: bytes | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-counter")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("meters/v1/+/readings", 1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages += 1
            self.bytes += len(msg.payload)
            if self.sample is None:
                self.sample = bytes(msg.payload)

    def read(self) -> tuple[int, int]:
        with self.lock:
            return self.messages, self.bytes

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def bench_concentrator(broker_port: int) -> dict[str, Any]:
    counter = Counter(broker_port)
    proc = metersim("serve", "concentrator", "--broker", f"127.0.0.1:{broker_port}",
                    "--gw", "bench", "--meters", "2000", "--rate", "0",
                    "--batch", str(BATCH), "--backlog", "1000")  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while counter.read()[0] < 20:
            if time.monotonic() > deadline:
                raise RuntimeError("no concentrator messages arrived")
            time.sleep(0.05)
        m0, b0 = counter.read()
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(PUBLISH_SECONDS)
        m1, b1 = counter.read()
        elapsed = time.monotonic() - t0
        cpu = (cpu_seconds(proc.pid) - c0) / elapsed
        rss = rss_mib(proc.pid)
    finally:
        rc = stop(proc)
        counter.close()
    assert counter.sample is not None
    batch = parse_readings(counter.sample)  # the fast encoder's output validates
    readings = (m1 - m0) * len(batch.readings)
    return {
        "meters": 2000,
        "batch_readings": len(batch.readings),
        "points_per_reading": len(batch.readings[0].points),
        "messages_per_s": round((m1 - m0) / elapsed, 1),
        "readings_per_s": round(readings / elapsed),
        "points_per_s": round(readings * len(batch.readings[0].points) / elapsed),
        "mib_per_s": round((b1 - b0) / elapsed / 2**20, 2),
        "publisher_cpu_percent": round(100 * cpu, 1),
        "publisher_rss_mib": round(rss, 1),
        "target_readings_per_s": 50_000,
        "exit_code": rc,
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        broker = MosquittoServer(tmp)
        broker.start()
        try:
            fleet = bench_fleet(tmp, broker.port)
            conc = bench_concentrator(broker.port)
        finally:
            broker.kill()
    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "mosquitto": "2.0 (Debian)",
        },
        "fleet": fleet,
        "concentrator": conc,
    }
    rows = [("fleet: " + k, v) for k, v in fleet.items()]
    rows += [("concentrator: " + k, v) for k, v in conc.items()]
    width = max(len(k) for k, _ in rows)
    print(f"{'metric':<{width}}  value")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    out = ROOT / "bench" / "results" / "simulator.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    ok = conc["readings_per_s"] >= 50_000 and fleet["serving_timeouts"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
