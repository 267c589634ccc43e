"""Reload on SIGHUP: the plan, the daemon applying it, and systemd's notify protocol."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config, parse_config
from gateway.daemon import Daemon
from gateway.model import EventKind
from gateway.reload import plan_reload
from simulator.dlt645.bus import Dlt645Bus
from simulator.meter.meter import SimMeter

pytestmark = pytest.mark.timeout(90)

BASE = """
[gateway]
name = "reload-test"
state_dir = "{state}"
shutdown_timeout = "5s"
[http]
enabled = false
[sinks.local]
enabled = false
[poll_groups.fast]
interval = "{fast}"
quantities = ["energy_import_total_kwh"]
[poll_groups.slow]
interval = "1h"
quantities = ["voltage_l1_v"]
[[buses]]
name = "a"
protocol = "dlt645-2007"
serial = {{ port = "{a}", baud = 9600 }}
timeout = "200ms"
[[buses.meters]]
address = "000000000001"
poll = ["fast"]
[[buses]]
name = "b"
protocol = "dlt645-2007"
serial = {{ port = "{b}", baud = 9600 }}
timeout = "{b_timeout}"
[[buses.meters]]
address = "000000000002"
poll = ["slow"]
"""


def text(
    state: str = "/tmp/x", a: str = "/dev/a", b: str = "/dev/b", fast: str = "500ms",
    b_timeout: str = "200ms", extra: str = "",
) -> str:  # fmt: skip
    return BASE.format(state=state, a=a, b=b, fast=fast, b_timeout=b_timeout) + extra


def test_an_unchanged_config_restarts_nothing() -> None:
    plan = plan_reload(parse_config(text()), parse_config(text()))
    assert plan.empty
    assert plan.describe() == "nothing to restart"


def test_only_the_buses_a_change_touches_restart() -> None:
    old = parse_config(text())
    assert plan_reload(old, parse_config(text(b_timeout="300ms"))).buses == ("b",)
    # A poll group's interval restarts the buses whose meters use it, not the others.
    assert plan_reload(old, parse_config(text(fast="2s"))).buses == ("a",)
    removed = text().split('[[buses]]\nname = "b"')[0]
    assert plan_reload(old, parse_config(removed)).buses == ("b",)


def test_sinks_and_ingest_restart_alone_and_restart_only_sections_wait() -> None:
    old = parse_config(text())
    mqtt = '[ingest]\nbroker = { url = "mqtt://127.0.0.1:1883" }\n'
    plan = plan_reload(old, parse_config(text(extra=mqtt)))
    assert (plan.buses, plan.sinks, plan.ingest) == ((), (), True)
    renamed = parse_config(text().replace('name = "reload-test"', 'name = "other"'))
    plan = plan_reload(old, renamed)
    assert plan.needs_restart == ("gateway",)
    assert plan.config.gateway.name == "reload-test"  # kept until the next start
    assert "gateway changed: applied at the next start" in plan.describe()


@pytest.mark.asyncio
async def test_the_daemon_restarts_a_changed_bus_keeps_the_other_and_refuses_a_bad_file(
    tmp_path: Path,
) -> None:
    state = str(tmp_path / "state")
    meters_a, meters_b = [SimMeter("000000000001", seed=1)], [SimMeter("000000000002", seed=2)]
    async with (
        Dlt645Bus(meters_a, "dlt645-2007", baud=9600, name="a") as sim_a,
        Dlt645Bus(meters_b, "dlt645-2007", baud=9600, name="b") as sim_b,
    ):
        a, b = await sim_a.start_pty(), await sim_b.start_pty()
        path = tmp_path / "gw.toml"
        path.write_text(text(state, a, b), encoding="utf-8")
        daemon = Daemon(load_config(path), config_path=str(path))
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.started.wait(), 10)
            sched = daemon.status.scheduler
            assert sched is not None
            await _until(lambda: sched.buses[0].meters[0].stored_ms is not None, "bus a polls")
            tasks = dict(sched._tasks)

            path.write_text(text(state, a, b, b_timeout="300ms"), encoding="utf-8")
            daemon.request_reload()
            await _until(lambda: sched._tasks.get("b") is not tasks["b"], "bus b restarted")
            assert sched._tasks["a"] is tasks["a"]  # untouched: same task, same schedule
            new_b = next(w for w in sched.buses if w.name == "b")
            assert new_b.cfg.timeout == 0.3
            await _until(lambda: new_b.meters[0].stored_ms is not None, "the new bus b polls")

            path.write_text(text(state, a, b).replace("interval", "intervall"), encoding="utf-8")
            daemon.request_reload()
            await _until(lambda: _kinds(daemon).count(REJECTED) == 1, "the rejection")
            assert sched._tasks["a"] is tasks["a"]
            assert daemon.config.buses[1].timeout == 0.3  # the running config is kept
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 15)
    assert _kinds(daemon).count(EventKind.CONFIG_RELOADED.value) == 1
    [rejected] = [e for e in daemon.recent.events if e.kind == REJECTED]
    # Names the file, the key and the problem, and says what happened.
    assert rejected.reason.startswith("4 problem(s) in the new config, the running one is kept")
    assert f"{path}: poll_groups.fast.interval: Field required" in rejected.reason


REJECTED = EventKind.CONFIG_RELOAD_REJECTED.value


def _kinds(daemon: Daemon) -> list[str]:
    return [e.kind for e in daemon.recent.events]


async def _until(pred: object, what: str, within: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not pred():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_metergw_run_tells_systemd_ready_reloading_and_stopping(tmp_path: Path) -> None:
    """The real process under a notify socket, as systemd runs it: READY once serving,
    watchdog pings, RELOADING then READY on SIGHUP (the process lives on), STOPPING."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(20)
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[gateway]\nname = "notify"\nstate_dir = "{tmp_path / "state"}"\n'
        "[http]\nenabled = false\n",
        encoding="utf-8",
    )
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def next_message(*keys: str) -> dict[str, str]:
        while True:
            data = notify.recv(4096).decode()
            fields = dict(line.split("=", 1) for line in data.splitlines())
            if any(k in fields for k in keys):
                return fields

    try:
        ready = next_message("READY")
        assert ready["STATUS"].startswith("serving:")
        assert "WATCHDOG" in next_message("WATCHDOG")
        proc.send_signal(signal.SIGHUP)
        assert "RELOADING" in next_message("RELOADING")
        assert "READY" in next_message("READY")
        assert proc.poll() is None  # SIGHUP no longer ends the daemon
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING" in next_message("STOPPING")
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    assert proc.returncode == 0
    events = [json.loads(line)["event"] for line in stderr.decode().splitlines() if line]
    assert "config_reloaded" in events
