"""The daemon as a process, given passwords and a token three ways (in the ingest URL, from a
file, from the environment): a refused login shows in the log, the events and /readyz, the
credentials that are right are used, and no secret appears in any log line, in /status,
/readyz or /metrics, or in check-config's output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.buffer import Buffer
from gateway.config import load_config
from gateway.metrics import Metrics
from tests.servers import MosquittoServer, VictoriaMetricsServer, free_port

pytestmark = [pytest.mark.asyncio, pytest.mark.integration, pytest.mark.timeout(90)]

INGEST_SECRET = "wrong-1ngest-Pa55"
NORTH_SECRET = "n0rth-file-Pa55"
TOKEN_SECRET = "t0ken-from-env"
SECRETS = (INGEST_SECRET, NORTH_SECRET, TOKEN_SECRET)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def write_config(
    tmp_path: Path, broker: MosquittoServer, vm: VictoriaMetricsServer, port: int
) -> Path:
    (tmp_path / "north-password").write_text(NORTH_SECRET + "\n")
    config = tmp_path / "gw.toml"
    config.write_text(
        f"""
[gateway]
name = "secrets-test"
state_dir = "{tmp_path / "state"}"
shutdown_timeout = "5s"
[logging]
level = "debug"
format = "json"
[http]
port = {port}
[ingest]
broker = {{ url = "mqtt://gw:{INGEST_SECRET}@127.0.0.1:{broker.port}", client_id = "secrets-gw" }}
[sinks.mqtt]
broker = {{ url = "{broker.url}", username = "north", password_file = "north-password" }}
flush_interval = "50ms"
[sinks.influx]
url = "{vm.url}"
token = "${{INFLUX_TOKEN}}"
org = "o"
bucket = "b"
flush_interval = "50ms"
""",
        encoding="utf-8",
    )
    return config


async def test_no_secret_is_shown_and_a_refused_login_is_reported(
    tmp_path: Path,
    start_mosquitto: Callable[..., MosquittoServer],
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    broker = start_mosquitto(passwords={"gw": "the-right-one", "north": NORTH_SECRET})
    port = free_port()
    config = write_config(tmp_path, broker, victoria_metrics, port)
    env = {**os.environ, "INFLUX_TOKEN": TOKEN_SECRET}

    check = await asyncio.to_thread(check_config, config, env)
    assert check.returncode == 0, check.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text().replace('"mqtt://gw:', '"tcp://gw:'), encoding="utf-8")
    check_bad = await asyncio.to_thread(check_config, bad, env)
    assert check_bad.returncode == 2
    assert f"'tcp://127.0.0.1:{broker.port}' is not an MQTT URL" in check_bad.stderr

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "-c", str(config),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    lines: list[str] = []  # stdout and stderr

    async def collect() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            lines.append(line.decode())

    def events(name: str) -> list[dict[str, Any]]:
        logged = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in logged if e["event"] == name]

    reader = asyncio.create_task(collect())
    documents: list[str] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.returncode is None, "the daemon exited early"
            assert time.monotonic() < deadline, "the refused login never reached /readyz"
            code, body = await asyncio.to_thread(get, f"{base}/readyz")
            if code == 503 and "refused the login" in body:
                break
            await asyncio.sleep(0.1)
        readyz = json.loads(body)
        assert readyz["reasons"] == [
            f"ingest: broker {broker.url} refused the login (user 'gw'): Not authorized"
        ]
        # The event reaches both sinks: the MQTT sink's password and the token work.
        while True:
            assert time.monotonic() < deadline, "the event was not forwarded"
            code, body = await asyncio.to_thread(get, f"{base}/status")
            sinks = json.loads(body)["buffer"]["sinks"] if code == 200 else []
            if len(sinks) == 2 and all(s["depth"] == 0 and s["cursor"] > 0 for s in sinks):
                break
            await asyncio.sleep(0.1)
        documents.append(body)
        for path in ("/readyz", "/metrics", "/healthz"):
            documents.append((await asyncio.to_thread(get, f"{base}{path}"))[1])
        # paho retries after 1 s, then 2 s: wait for a second refusal (logged at debug).
        while len(events("ingest_login_refused")) < 2:
            assert time.monotonic() < deadline, "no second attempt"
            await asyncio.sleep(0.1)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await proc.wait()
            await reader
    stderr = "".join(lines)
    assert proc.returncode == 0, stderr[-3000:]
    refused = events("ingest_login_refused")
    assert [e["level"] for e in refused[:2]] == ["error", "debug"]
    assert refused[0]["broker"] == broker.url
    assert refused[0]["reason"] == "Not authorized"
    started = events("ingest_started")[0]
    assert started["broker"] == broker.url
    assert started["username"] == "gw"

    outputs = [stderr, check.stdout + check.stderr]
    outputs += [check_bad.stdout + check_bad.stderr, *documents]
    for secret in SECRETS:
        assert all(secret not in text for text in outputs), secret

    cfg = load_config(config, env={"INFLUX_TOKEN": TOKEN_SECRET})
    buffer = await Buffer.open(cfg.buffer_path(), cfg.buffer, Metrics())
    try:
        events = (await buffer.read("check", 0, 1000)).events
    finally:
        await buffer.close()
    kinds: list[Any] = [e[1] for e in events]
    assert kinds.count("ingest_login_refused") == 1  # once per streak, however many retries
