"""A sink added from outside ``gateway/`` (tests/gateway/forward/toy_sink.py): registered at
run time, configured from its TOML table, fed by the real forwarder from a real buffer,
run by the daemon, and listed by check-config, ``/status`` and ``metergw status``."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from gateway.buffer import Buffer
from gateway.cli import main
from gateway.cli.reference import json_schema, reference_markdown
from gateway.config import load_config, parse_config
from gateway.config.northbound import BufferConfig
from gateway.daemon import Daemon
from gateway.forward import SINKS, Forwarder, SinkEntry, build_sinks, register_sink
from gateway.metrics import Metrics
from gateway.status.render import status_view
from tests.gateway.buffer.factory import reading
from tests.gateway.forward.toy_sink import ToySink, ToySinkConfig

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def toy() -> Iterator[SinkEntry[ToySinkConfig]]:
    """The toy sink registered for one test (the registry is the process's)."""
    entry = SinkEntry("toy", ToySinkConfig, ToySink)
    register_sink(entry)
    try:
        yield entry
    finally:
        SINKS.pop("toy")


class Misnamed(ToySink):
    def __init__(self, config: ToySinkConfig, gateway: str) -> None:
        super().__init__(config, gateway)
        self.name = "toy2"


def config_file(tmp_path: Path, sinks: str, name: str = "gw.toml") -> Path:
    f = tmp_path / name
    f.write_text(
        f'[gateway]\nname = "box-1"\nstate_dir = "{tmp_path / "state"}"\n'
        'shutdown_timeout = "5s"\n[logging]\nlevel = "warning"\n[http]\nport = 0\n' + sinks,
        encoding="utf-8",
    )
    return f


async def until(pred: Callable[[], bool], within: float = 15.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not pred():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


def test_an_unknown_sink_table_is_a_config_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = config_file(tmp_path, '[sinks.toy]\nlabel = "north"\n[sinks.locl]\n')
    assert main(["check-config", str(f)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{f}: sinks.toy: unknown sink 'toy' (sinks: influx, mqtt, local)",
        f"{f}: sinks.locl: unknown sink 'locl'; did you mean 'local'? (sinks: influx, mqtt, local)",
    ]
    assert main(["run", "-c", str(f)]) == 2  # the daemon refuses it the same way


def test_a_registered_sink_is_configured_from_its_table_and_listed(
    toy: SinkEntry[ToySinkConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = config_file(tmp_path, '[sinks.toy]\nlabel = "north"\n[sinks.local]\nenabled = false\n')
    assert main(["check-config", str(f)]) == 0
    assert "sinks local (disabled), toy" in capsys.readouterr().out
    cfg = load_config(f)
    section = cfg.sinks.section("toy", ToySinkConfig)
    assert section is not None
    assert (section.label, section.batch_size) == ("north", 50)
    [sink] = build_sinks(cfg, Metrics())  # the disabled local sink is not built
    assert isinstance(sink, ToySink)
    assert sink.label == "box-1/north"

    # The registry's name is the sink's cursor: a sink calling itself otherwise is refused.
    SINKS["toy"] = SinkEntry("toy", ToySinkConfig, Misnamed)
    with pytest.raises(ValueError, match=r"\[sinks.toy\] built a sink named 'toy2'"):
        build_sinks(cfg, Metrics())
    SINKS["toy"] = toy

    # Its own model's errors, located under its table as for the built-in sinks.
    bad = config_file(tmp_path, '[sinks.toy]\nlabel = ""\nbatchsize = 5\n', "bad.toml")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith(f"{bad}: sinks.toy.label: String should have at least 1 character")
    assert err[1] == f"{bad}: sinks.toy.batchsize: unknown key; did you mean 'batch_size'?"

    # The schema and the reference page list it with its keys.
    schema = json_schema()
    toy_schema = schema["$defs"]["SinksConfig"]["properties"]["toy"]
    assert {"$ref": "#/$defs/ToySinkConfig"} in toy_schema["anyOf"]
    assert toy_schema["description"] == "Rows kept in memory, for tests."
    assert set(schema["$defs"]["ToySinkConfig"]["properties"]) == {
        "enabled",
        "label",
        "batch_size",
        "flush_interval",
    }
    reference = reference_markdown()
    assert "| `toy` | table | unset | Rows kept in memory, for tests. |" in reference
    assert "## `[sinks.toy]`" in reference


@pytest.mark.asyncio
async def test_the_forwarder_delivers_to_it_from_the_buffer(
    toy: SinkEntry[ToySinkConfig], tmp_path: Path
) -> None:
    cfg = load_config(config_file(tmp_path, '[sinks.toy]\nlabel = "north"\nbatch_size = 40\n'))
    metrics = Metrics()
    [sink] = build_sinks(cfg, metrics)
    assert isinstance(sink, ToySink)
    async with await Buffer.open(str(tmp_path / "b.sqlite"), BufferConfig(), metrics) as buf:
        task = asyncio.create_task(Forwarder(buf, sink, metrics).run())
        try:
            await buf.accept([reading(i) for i in range(120)])
            await until(lambda: len(sink.rows) == 120, what="120 rows at the toy sink")
            await until(lambda: buf.stats().sinks["toy"].depth == 0, what="the toy's cursor")
        finally:
            task.cancel()
            await asyncio.wait([task])
    assert [seq for seq, *_ in sink.rows] == list(range(1, 121))
    assert sink.rows[7][1:] == ("dlt645-2007:000000000001", "energy_import_total_kwh", "7.01")


def _get_status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/status", timeout=5) as r:
        doc: dict[str, Any] = json.loads(r.read())
        return doc


@pytest.mark.asyncio
async def test_the_daemon_runs_it_and_the_status_lists_it(
    toy: SinkEntry[ToySinkConfig], tmp_path: Path
) -> None:
    f = config_file(tmp_path, '[sinks.toy]\nlabel = "north"\n[sinks.local]\nenabled = false\n')
    daemon = Daemon(parse_config(f.read_text(encoding="utf-8"), file=str(f), env={}))
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(10):
            await daemon.started.wait()
        [sink] = daemon.status.sink_parts
        assert isinstance(sink, ToySink)
        buffer = daemon.status.buffer
        assert isinstance(buffer, Buffer)
        await buffer.accept([reading(i) for i in range(30)])
        await until(lambda: len(sink.rows) == 30, what="30 rows through the daemon")
        assert daemon.http is not None
        doc = await asyncio.to_thread(_get_status, daemon.http.url)
        await until(lambda: buffer.stats().sinks["toy"].depth == 0, what="the toy's cursor")
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)
    assert sink.closed
    assert doc["sinks"] == [{"name": "toy", "refused": None}]
    console = Console(width=120, record=True, color_system=None)
    console.print(status_view(doc))
    rows = [line for line in console.export_text().splitlines() if "toy" in line]
    assert len(rows) == 1
    assert [cell.strip() for cell in rows[0].split("│") if cell.strip()][:2] == ["toy", "running"]
