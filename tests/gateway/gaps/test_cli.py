"""``metergw backfill`` (alone, and filed for a running daemon) and ``metergw read`` of the
load profile, as a user runs them against the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import signal
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.gaps import GapCause, GapState, read_gaps
from protocols.dlt645 import LOAD_BLOCKS
from simulator import Dlt645Bus, SimClock, SimMeter
from tests.servers import free_port

ADDR = "000000000051"


async def metergw(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
        return body


def config(tmp_path: Path, device: str, port: int) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        f"""
[gateway]
name = "backfill-test"
state_dir = "{tmp_path / "state"}"
timezone = "Asia/Shanghai"
shutdown_timeout = "5s"
[http]
port = {port}
[poll_groups.energy]
interval = "15m"
quantities = ["energy_import_total_kwh"]
[[buses]]
name = "line"
protocol = "dlt645-2007"
serial = {{ port = "{device}", baud = 9600 }}
timeout = "300ms"
[[buses.meters]]
name = "m51"
address = "{ADDR}"
poll = ["energy"]
""",
        encoding="utf-8",
    )
    return path


def span(hours: float) -> tuple[str, str]:
    """``--from``/``--to`` for the last ``hours`` hours, on 15-minute boundaries (UTC)."""
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    end = now - dt.timedelta(minutes=now.minute % 15 + 15)
    return (end - dt.timedelta(hours=hours)).isoformat(), end.isoformat()


@pytest.mark.asyncio
async def test_read_passes_the_load_profiles_start_and_count() -> None:
    meter = SimMeter(ADDR, seed=51, clock=SimClock(speed=0))
    start = (meter.meter_time() - dt.timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    async with Dlt645Bus([meter]) as sim:
        path = await sim.start_pty()
        base = ("read", "--serial", path, "--addr", ADDR, "--di", "06000001", "--timeout", "0.5")
        code, out, err = await metergw(*base, "--from", start.isoformat(), "--count", "3", "--json")
        assert code == 0, err
        code_missing, _, err_missing = await metergw(*base)
    values = json.loads(out)["values"]
    n = sum(len(block) for block in LOAD_BLOCKS[:4])  # a 3-phase meter's blocks 1-4
    expected = meter.load_profile(start, 3)
    assert len(values) == 3 * n
    for (at, record), chunk in zip(
        expected,
        [values[i : i + n] for i in range(0, len(values), n)],
        strict=False,
    ):
        for v in chunk:
            assert v["item"].endswith(at.isoformat(timespec="minutes"))
            assert Decimal(v["value"]) == record[v["key"]]
    assert code_missing == 2
    assert "--from" in err_missing


@pytest.mark.asyncio
async def test_backfill_alone_reads_the_meter_and_fills_the_gap(tmp_path: Path) -> None:
    meter = SimMeter(ADDR, seed=51, clock=SimClock())
    async with Dlt645Bus([meter], baud=9600) as sim:
        cfg = config(tmp_path, await sim.start_pty(), free_port())  # no daemon on that port
        start, end = span(2)
        code, out, err = await metergw(
            "backfill", "-c", str(cfg), "--meter", "m51", "--from", start, "--to", end
        )
    assert code == 0, err[-2000:]
    lines = out.splitlines()
    assert lines[-1].startswith("filled: all 8 interval(s) recovered"), out
    assert any("intervals recovered" in line and "% read" in line for line in lines[:-1])
    [gap] = read_gaps(str(tmp_path / "state" / "buffer.sqlite"))
    assert gap.cause is GapCause.MANUAL
    assert gap.state is GapState.FILLED
    assert gap.expected == gap.recovered == 8


@pytest.mark.asyncio
async def test_backfill_is_filed_for_a_running_daemon_which_fills_it(tmp_path: Path) -> None:
    meter = SimMeter(ADDR, seed=51, clock=SimClock())
    port = free_port()
    async with Dlt645Bus([meter], baud=9600) as sim:
        cfg = config(tmp_path, await sim.start_pty(), port)
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "-c", str(cfg),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    await asyncio.to_thread(get, f"http://127.0.0.1:{port}/healthz")
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the daemon did not start"
                    await asyncio.sleep(0.1)
            start, end = span(3)
            code, out, err = await metergw(
                "backfill", "-c", str(cfg), "--meter", "m51", "--from", start, "--to", end
            )
            status = json.loads(await asyncio.to_thread(get, f"http://127.0.0.1:{port}/status"))
        finally:
            daemon.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(daemon.wait(), 10)
            if daemon.returncode is None:
                daemon.kill()
    assert code == 0, err[-2000:]
    assert out.startswith("filed backfill m51@"), out
    assert "filled: all 12 interval(s) recovered" in out
    gaps = status["gaps"]
    assert gaps["counts"]["filled"] >= 1
    [row] = [g for g in gaps["gaps"] if g["cause"] == "manual"]
    assert row["state"] == "filled"
    assert row["recovered"] == row["expected"] == 12
    assert row["progress"] == 1.0
