"""The whole path in one process: broker -> ingest -> buffer -> InfluxDB and local sinks."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench._runner import run_pipeline
from gateway.config import load_config
from gateway.metrics import Metrics
from tests.gateway.ingest.payloads import batch, encode
from tests.integration.helpers import Publisher, prepare_session, write_config
from tests.servers import MosquittoServer, VictoriaMetricsServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "examples" / "concentrator-influx.toml"


def test_example_config_loads_with_its_environment(tmp_path: Path) -> None:
    env = {
        "METERGW_MQTT_URL": "mqtt://broker.example:1883",
        "METERGW_INFLUX_URL": "http://influx.example:8086",
        "METERGW_INFLUX_TOKEN": "s3cret",
        "METERGW_INFLUX_ORG": "utility",
        "METERGW_INFLUX_BUCKET": "meters",
        "METERGW_STATE_DIR": str(tmp_path),
    }
    cfg = load_config(EXAMPLE, env=env)
    assert cfg.ingest is not None
    assert cfg.ingest.broker.url == "mqtt://broker.example:1883"
    assert cfg.ingest.topics == ["meters/v1/+/readings"]
    assert "influx" in cfg.sinks
    assert cfg.sinks["influx"].token.get_secret_value() == "s3cret"
    assert (cfg.sinks["influx"].org, cfg.sinks["influx"].bucket) == ("utility", "meters")
    assert cfg.buffer_path() == f"{tmp_path}/buffer.sqlite"
    assert "s3cret" not in repr(cfg)


@pytest.mark.asyncio
async def test_concentrator_readings_reach_influx_and_the_local_query(
    tmp_path: Path, mosquitto: MosquittoServer, victoria_metrics: VictoriaMetricsServer
) -> None:
    config_path = write_config(
        tmp_path / "gw.toml",
        state_dir=tmp_path / "state",
        mqtt_url=mosquitto.url,
        influx_url=victoria_metrics.url,
        local=True,
    )
    config = load_config(config_path)
    await asyncio.to_thread(
        prepare_session,
        mosquitto.host,
        mosquitto.port,
        "metergw-test-ingest",
        "meters/v1/+/readings",
    )
    with Publisher(mosquitto.host, mosquitto.port) as pub:
        await asyncio.to_thread(
            pub.publish_many,
            [("meters/v1/c1/readings", encode(batch(seq=s, base=s * 2))) for s in range(1, 11)],
        )
    metrics = Metrics()
    task = asyncio.create_task(run_pipeline(config, metrics))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while (
            metrics.registry.get_sample_value("metergw_sink_points_total", {"sink": "local"}) or 0
        ) < 40 or (
            metrics.registry.get_sample_value("metergw_sink_points_total", {"sink": "influx"}) or 0
        ) < 40:
            assert loop.time() < deadline, "timed out waiting for both sinks"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert await asyncio.to_thread(victoria_metrics.samples, '{__name__="meter_value"}') == 40
    await asyncio.to_thread(check_query_cli, config_path)


def check_query_cli(config_path: Path) -> None:
    # The local store answers `metergw query` (the readings are a day old: look back 2 days).
    cmd = [sys.executable, "-m", "gateway", "query", "-c", str(config_path)]
    out = subprocess.run(
        [*cmd, "--meter", "000000000002", "--since", "2d", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert [(r["meter"], r["key"], r["value"]) for r in rows] == [
        ("dlt645-2007:000000000002", "energy_import_total_kwh", "1000"),
        ("dlt645-2007:000000000002", "voltage_l1_v", "1000.01"),
    ]
    table = subprocess.run(
        [*cmd, "--meter", "000000000002", "--since", "2d", "--key", "voltage_l1_v"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert table[0].split() == ["time", "(UTC)", "meter", "key", "value", "unit", "quality"]
    assert table[1].split()[2:] == [
        "dlt645-2007:000000000002",
        "voltage_l1_v",
        "1000.01",
        "kWh",
        "ok",
    ]
    nothing = subprocess.run(
        [*cmd, "--meter", "999", "--since", "1h"], cwd=ROOT, capture_output=True, text=True
    )
    assert nothing.returncode == 1
    assert "no readings of 999" in nothing.stderr
