"""``make demo`` headless: readings from every protocol reach the local store,
the injected outage is reported, and nothing is left running."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_SECONDS = 32
# The scenario's meter 3 goes silent at t=20 s; for a short test it goes at t=3 s.
FAULT_AT = "at = 20"


@pytest.mark.timeout(120)
def test_demo_runs_headless_and_stops_cleanly(tmp_path: Path) -> None:
    scenario = (ROOT / "config/sim/demo.toml").read_text(encoding="utf-8")
    assert FAULT_AT in scenario, "the demo scenario's fault timeline changed"
    short = tmp_path / "demo-short.toml"
    short.write_text(scenario.replace(FAULT_AT, "at = 3"), encoding="utf-8")

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.demo",
            "--duration",
            str(DEMO_SECONDS),
            "--scenario",
            str(short),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEMO_SECONDS + 60,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    assert "gateway exited with 0" in out, out[-2000:]

    # The gateway's own status saw every kind of source (the final summary).
    for proto, meters in (("dlt645-2007", 5), ("dlt645-1997", 2), ("modbus-tcp", 1)):
        assert re.search(rf"{proto}\s+{meters} meters\s+[1-9]", out), out[-2000:]
    assert re.search(r"concentrator\s+20 meters\s+[1-9]", out), out[-2000:]

    # Not a terminal: plain lines, the outage among them as it happened.
    assert re.search(r"meter_offline 000000000003\b", out), out[-4000:]
    assert "\x1b[" not in out, "escape codes in plain output"

    # Both children are gone (reaped, not just signalled).
    pids = [int(p) for p in re.findall(r"(?:gateway|simulator) pid (\d+)", out)]
    assert len(pids) == 2, out[:2000]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} is still there"

    # Every protocol reached the local store.
    db = sqlite3.connect(f"file:{ROOT / 'var/demo/local.sqlite'}?mode=ro", uri=True)
    try:
        sources = dict(
            db.execute("SELECT source, COUNT(DISTINCT meter) FROM local_readings GROUP BY source")
        )
        offline = db.execute(
            "SELECT COUNT(*) FROM local_events WHERE kind = 'meter_offline' AND subject = ?",
            ("000000000003",),
        ).fetchone()[0]
    finally:
        db.close()
    # DL/T 645-2007 (meter 3 may have gone silent before its first reading)
    assert sources.get("rs485-1", 0) >= 4, sources
    assert sources.get("rs485-2") == 2, sources  # DL/T 645-1997
    assert sources.get("modbus-tcp-1") == 1, sources  # Modbus TCP
    assert sources.get("meters/v1/conc-demo/readings") == 20, sources  # concentrator
    assert offline >= 1


@pytest.mark.timeout(60)
def test_ctrl_c_stops_everything_cleanly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.demo"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    # Ctrl-C once readings flow on every kind of link, as a user would.
    waiting = {"meter_online sdm630-1", "meter_online 000000000001", "meter_online 000000000011"}
    try:
        for line in proc.stdout:
            lines.append(line)
            waiting = {w for w in waiting if w not in line}
            if not waiting or "gateway exited" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(lines) + out
    assert proc.returncode == 0, text[-3000:]
    assert "gateway exited with 0, simulator with 0" in text
    for pid in (int(p) for p in re.findall(r"(?:gateway|simulator) pid (\d+)", text)):
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} is still there"


def test_demo_help_names_its_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.demo", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    for option in ("--duration", "--plain", "--scenario"):
        assert option in result.stdout


@pytest.mark.timeout(60)
def test_demo_refuses_to_start_when_a_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 18090))
        taken.listen()
        result = subprocess.run(
            [sys.executable, "-m", "gateway.demo", "--duration", "5"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=50,
            check=False,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "18090 (the simulator's control API)" in result.stdout, result.stdout
    assert "Is another demo still running?" in result.stdout
    assert "simulator pid" not in result.stdout, "started although a port was taken"
