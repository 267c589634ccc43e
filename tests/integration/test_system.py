"""The whole gateway as an operator runs it, against real peers on every side.

Southbound: simulated DL/T 645-2007 meters on a pseudo serial line, a Modbus
TCP SDM630, and a concentrator publishing to a real Mosquitto. The gateway is
``metergw run -c FILE`` as a process. Northbound: a real VictoriaMetrics
written through influxdb-client, MQTT to the same Mosquitto, and the local
store read with ``metergw query``. Then SIGTERM, and a clean exit.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from simulator import Concentrator, Dlt645Bus, ModbusServer, SimClock, SimMeter
from tests.servers import MosquittoServer, VictoriaMetricsServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CONFIG = """
[gateway]
name = "sys-test"
state_dir = "{state}"
shutdown_timeout = "10s"

[logging]
format = "json"

[http]
port = {http_port}

[buffer]
commit_interval = "20ms"

[ingest]
broker = {{ url = "{mqtt_url}", client_id = "metergw-sys-test" }}

[sinks.influx]
url = "{vm_url}"
token = "not-checked"
org = "utility"
bucket = "meters"
flush_interval = "200ms"

[sinks.mqtt]
broker = {{ url = "{mqtt_url}", client_id = "metergw-sys-test-north" }}
topic_prefix = "north/v1"
flush_interval = "200ms"

[sinks.local]
retention = "1d"

[poll_groups.fast]
interval = "1s"
quantities = ["energy_import_total_kwh", "voltage_l1_v"]

[[buses]]
name = "rs485-1"
protocol = "dlt645-2007"
serial = {{ port = "{pty}" }}
timeout = "300ms"

[[buses.meters]]
address = "000000000001"
poll = ["fast"]

[[buses.meters]]
address = "000000000002"
poll = ["fast"]

[[buses]]
name = "mb-1"
protocol = "modbus-tcp"
tcp = {{ host = "127.0.0.1", port = {modbus_port} }}
timeout = "300ms"

[[buses.meters]]
name = "sdm630-1"
unit = 1
profile = "sdm630"
poll = ["fast"]
"""


async def wait_for(predicate: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``predicate`` with a deadline, letting the in-process simulator run."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.2)


def served_energy(meter: SimMeter) -> Decimal:
    """The import-energy total this meter last put on the wire."""
    for di in (0x00010000, 0x0001FF00):
        if di in meter.last_served:
            return meter.last_served[di][0]
    raise AssertionError(f"meter {meter.address} has not served its energy register")


def series_by_meter(vm: VictoriaMetricsServer) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for s in vm.export('{__name__="meter_value"}'):
        out.setdefault((s["metric"]["meter"], s["metric"]["quantity"]), []).extend(s["values"])
    return out


@pytest.mark.asyncio
async def test_every_protocol_reaches_every_sink(
    tmp_path: Path, mosquitto: MosquittoServer, victoria_metrics: VictoriaMetricsServer
) -> None:
    clock = SimClock()
    meters = [SimMeter(f"00000000000{i}", seed=i, clock=clock) for i in (1, 2)]
    sdm = SimMeter("000000000100", seed=100, clock=clock)
    field = [SimMeter(f"5000000000{i:02d}", seed=50 + i, clock=clock) for i in range(5)]

    north: list[bytes] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sys-north-reader")
    sub.on_message = lambda c, u, m: north.append(m.payload)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("north/v1/#", qos=1)
    sub.loop_start()

    async with Dlt645Bus(meters) as bus:
        pty = await bus.start_pty()
        modbus = ModbusServer("sdm630", {1: sdm})
        modbus_port = await modbus.start_tcp("127.0.0.1", 0)
        conc = Concentrator("conc-7", (mosquitto.host, mosquitto.port), field, interval=1.0)
        await conc.start()
        config = tmp_path / "gw.toml"
        config.write_text(
            CONFIG.format(
                state=tmp_path / "state",
                http_port=free_port(),
                mqtt_url=mosquitto.url,
                vm_url=victoria_metrics.url,
                pty=pty,
                modbus_port=modbus_port,
            )
        )
        log = (tmp_path / "gateway.log").open("wb")
        gw = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "-c", str(config), stdout=log, stderr=log
        )
        try:
            wanted = {
                ("000000000001", "energy_import_total_kwh"),
                ("000000000002", "voltage_l1_v"),
                ("sdm630-1", "energy_import_total_kwh"),
                ("dlt645-2007:500000000000", "energy_import_total_kwh"),
            }
            await wait_for(
                lambda: gw.returncode is None and wanted <= set(series_by_meter(victoria_metrics)),
                45,
                "readings of every protocol in VictoriaMetrics",
            )
            stored = series_by_meter(victoria_metrics)
            # The value a meter last answered is stored exactly (to the register's digits).
            served = served_energy(meters[0])
            await wait_for(
                lambda: (
                    float(served)
                    in series_by_meter(victoria_metrics)[
                        ("000000000001", "energy_import_total_kwh")
                    ]
                ),
                10,
                f"the served register {served}",
            )
            assert all(v > 0 for v in stored[("sdm630-1", "energy_import_total_kwh")])
            await wait_for(lambda: bool(north), 10, "northbound MQTT messages")
        finally:
            gw.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(gw.wait(), 20)
            except TimeoutError:
                gw.kill()
                await gw.wait()
            log.close()
            await conc.stop()
            await modbus.stop()
            sub.loop_stop()
            sub.disconnect()
        tail = (tmp_path / "gateway.log").read_text(errors="replace")[-3000:]
        assert gw.returncode == 0, tail

    topics_payload = [json.loads(p) for p in north]
    assert topics_payload, "the MQTT sink published nothing"
    query = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "query", "-c", str(config),
        "--meter", "000000000002", "--since", "1h", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(query.communicate(), 30)
    assert query.returncode == 0, err.decode()
    keys = {json.loads(line)["key"] for line in out.decode().splitlines() if line.strip()}
    assert {"energy_import_total_kwh", "voltage_l1_v"} <= keys
