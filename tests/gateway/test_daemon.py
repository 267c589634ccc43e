"""``metergw run`` as a process: config errors, buffer errors, SIGTERM shutdown."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway import logs
from gateway.buffer import Buffer
from gateway.config import load_config
from gateway.metrics import Metrics
from simulator.dlt645.bus import Dlt645Bus
from simulator.meter.meter import SimMeter
from tests.servers import free_port

pytestmark = pytest.mark.timeout(60)

RUN = [sys.executable, "-m", "gateway", "run", "-c"]


def run_gateway(config: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUN, str(config)], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_config_error_exits_2_with_every_problem_named(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[gateway]\nname = "x"\ncolour = "red"\nshutdown_timeout = "soon"\n[http]\nport = -1\n',
        encoding="utf-8",
    )
    result = run_gateway(config)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert f"{config}: gateway.colour: unknown key" in lines
    assert any(line.startswith(f"{config}: gateway.shutdown_timeout: ") for line in lines)
    assert any(line.startswith(f"{config}: http.port: ") for line in lines)
    assert len(lines) == 3, result.stderr


def test_unknown_modbus_profile_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        f"""
[gateway]
state_dir = "{tmp_path}"
[poll_groups.p]
interval = "10s"
quantities = ["voltage_l1_v"]
[[buses]]
name = "mb"
protocol = "modbus-tcp"
tcp = {{ host = "127.0.0.1", port = 1502 }}
[[buses.meters]]
unit = 1
profile = "no-such-meter"
poll = ["p"]
""",
        encoding="utf-8",
    )
    result = run_gateway(config)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{config}: buses[0].meters[0].profile: ")
    assert not (tmp_path / "buffer.sqlite").exists(), "nothing may be opened on a bad config"


def test_buffer_that_cannot_open_exits_1_naming_the_path(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "buffer.sqlite").write_bytes(b"this is not a database, and must not be reset" * 100)
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[gateway]\nstate_dir = "{state}"\n[http]\nenabled = false\n', encoding="utf-8"
    )
    result = run_gateway(config)
    assert result.returncode == 1
    assert f"cannot open the buffer at {state / 'buffer.sqlite'}" in result.stderr
    assert (state / "buffer.sqlite").read_bytes().startswith(b"this is not a database")


def _status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1) as r:
            doc: dict[str, Any] = json.loads(r.read())
            return doc
    except OSError:
        return None


def line_config(tmp_path: Path, device: str, port: int) -> Path:
    """Two DL/T 645 meters on ``device``, no sinks: every accepted row stays in the buffer."""
    config = tmp_path / "gw.toml"
    config.write_text(
        f"""
[gateway]
name = "sigterm-test"
state_dir = "{tmp_path / "state"}"
shutdown_timeout = "5s"
[http]
port = {port}
[poll_groups.fast]
interval = "500ms"
quantities = ["energy_import_total_kwh", "voltage_l1_v"]
[[buses]]
name = "line"
protocol = "dlt645-2007"
serial = {{ port = "{device}", baud = 9600 }}
timeout = "200ms"
[[buses.meters]]
address = "000000000001"
poll = ["fast"]
[[buses.meters]]
address = "000000000002"
poll = ["fast"]
""",
        encoding="utf-8",
    )
    return config


async def run_until_accepted(config: Path, port: int, readings: int) -> tuple[int, str, float, int]:
    """Start the daemon, SIGTERM it once ``readings`` were accepted: (exit status,
    stderr, seconds the shutdown took, readings accepted)."""
    proc = await asyncio.create_subprocess_exec(
        *RUN, str(config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        accepted = 0
        while accepted < readings:
            assert proc.returncode is None, "the daemon exited early"
            assert time.monotonic() < deadline, "no readings accepted in 20 s"
            doc = await asyncio.to_thread(_status, port)
            accepted = doc["readings_accepted"] if doc else 0
            await asyncio.sleep(0.2)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5 + 2):
            _, stderr = await proc.communicate()
        took = time.monotonic() - started
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, stderr.decode(), took, accepted


async def buffer_contents(config: Path) -> tuple[Any, list[Any]]:
    """Everything in the daemon's buffer, and its validation references."""
    cfg = load_config(config)
    buffer = await Buffer.open(cfg.buffer_path(), cfg.buffer, Metrics())
    try:
        return await buffer.read("check", 0, 1_000_000), await buffer.references()
    finally:
        await buffer.close()


@pytest.mark.asyncio
async def test_sigterm_stops_cleanly_and_keeps_what_was_accepted(tmp_path: Path) -> None:
    meters = [SimMeter(f"00000000000{i}", seed=i) for i in (1, 2)]
    port = free_port()
    async with Dlt645Bus(meters, "dlt645-2007", baud=9600, name="line") as bus:
        config = line_config(tmp_path, await bus.start_pty(), port)
        code, stderr, took, accepted = await run_until_accepted(config, port, 8)
    assert code == 0, stderr[-3000:]
    assert took < 5.0
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line]
    assert "daemon_stopping" in events
    assert events[-1] == "daemon_stopped"
    batch, refs = await buffer_contents(config)
    assert len(batch.readings) >= accepted
    # The validator kept, for the next start, each register's newest stored value.
    newest: dict[str, tuple[int, str]] = {}
    for r in batch.readings:
        if r[2] == "energy_import_total_kwh" and r[5] >= newest.get(r[1], (0, ""))[0]:
            newest[r[1]] = (r[5], r[3])
    assert len(newest) == 2
    assert {m: (ts, v) for m, _k, ts, v in refs} == newest


@pytest.mark.asyncio
async def test_a_restart_opens_a_gap_from_each_meters_last_stored_reading(
    tmp_path: Path,
) -> None:
    meters = [SimMeter(f"00000000000{i}", seed=i) for i in (1, 2)]
    port = free_port()
    async with Dlt645Bus(meters, "dlt645-2007", baud=9600, name="line") as bus:
        config = line_config(tmp_path, await bus.start_pty(), port)
        first = await run_until_accepted(config, port, 8)
        assert first[0] == 0, first[1][-3000:]
        _, refs = await buffer_contents(config)
        last = {m: ts for m, _k, ts, _v in refs}
        await asyncio.sleep(1.0)  # down for longer than the 500 ms energy interval
        second = await run_until_accepted(config, port, 8)
    assert second[0] == 0, second[1][-3000:]
    assert '"polling_resumed"' in second[1]
    batch, _ = await buffer_contents(config)
    opened = {e[3]: json.loads(e[5]) for e in batch.events if e[1] == "gap_opened"}
    # Each meter's first answer after the restart opened a gap from where it stopped.
    assert set(opened) == set(last) == {"000000000001", "000000000002"}
    for meter, detail in opened.items():
        assert detail["from_ms"] == last[meter]
    filled = [e for e in batch.events if e[1] == "gap_filled"]
    assert len(filled) == 2


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("http", "status HTTP server cannot listen on 127.0.0.1:{port}"),
        ("embedded_broker", "embedded MQTT broker cannot listen on 127.0.0.1:{port}"),
    ],
)
def test_a_taken_port_exits_1_naming_the_address(
    tmp_path: Path, section: str, message: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "gw.toml"
        http = f"port = {port}" if section == "http" else "enabled = false"
        config.write_text(
            f'[gateway]\nstate_dir = "{tmp_path}"\n[http]\n{http}\n'
            f"[embedded_broker]\nenabled = {'true' if section != 'http' else 'false'}\n"
            f"port = {port}\n",
            encoding="utf-8",
        )
        result = run_gateway(config)
    assert result.returncode == 1
    assert message.format(port=port) in result.stderr
    assert "Traceback" not in result.stderr


def test_logs_are_json_events_with_a_level_per_component() -> None:
    stream = io.StringIO()  # not a TTY: JSON lines
    logs.configure("info", "auto", {"scheduler": "debug", "buffer": "error"}, stream=stream)
    try:
        logs.get_logger("scheduler").debug("poll_planned", meter="000000000001")
        logs.get_logger("buffer").warning("buffer_slow_commit", seconds=2.5)
        logs.get_logger("daemon").info("daemon_started", name="box")
        logs.get_logger("daemon").debug("daemon_detail")
    finally:
        logs.configure("info", "auto", stream=sys.stderr)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["component"], e["event"], e["level"]) for e in lines] == [
        ("scheduler", "poll_planned", "debug"),
        ("daemon", "daemon_started", "info"),
    ]
    assert lines[0]["meter"] == "000000000001"
    assert lines[1]["timestamp"].endswith("Z")
