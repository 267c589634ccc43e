"""A protocol defined in tests/ is registered at run time and is then a protocol like
the built-in ones: its config validated by its own model, checked by its own hook,
polled through the real scheduler and bus task, its readings stored through the
real write path into a real buffer, and listed by the schema, docs and CLI. No
file of the gateway names it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.buffer import Buffer
from gateway.cli import build_parser, main
from gateway.cli.reference import json_schema, reference_markdown
from gateway.config import check_config, parse_config
from gateway.config.northbound import BufferConfig
from gateway.metrics import Metrics
from gateway.model import TimeSource
from gateway.scheduler import Scheduler
from gateway.southbound import plugin_for, protocol_names, register, registered
from gateway.validate import Validator
from gateway.writepath import WritePath
from tests.gateway.scheduler.conftest import until
from tests.gateway.southbound.toy import LINES, ToyBus, ToyLine, ToyMeterDevice, ToyPlugin

TOY = """
[poll_groups.fast]
interval = "1s"
quantities = ["energy_import_total_kwh", "voltage_l1_v"]

[[buses]]
name = "toy-1"
protocol = "toy"
tcp = {{ host = "{line}", port = 1 }}
jitter = 2
{meters}
"""
METERS = """
[[buses.meters]]
tag = "abc-01"
poll = ["fast"]

[[buses.meters]]
tag = "abc-02"
name = "kiosk"
poll = ["fast"]
"""


@pytest.fixture
def toy() -> Iterator[ToyPlugin]:
    with registered(ToyPlugin()) as plugin:
        yield plugin
    assert "toy" not in protocol_names()


@pytest.fixture
def line() -> Iterator[ToyLine]:
    devices = {
        "abc-01": ToyMeterDevice(
            {"energy_import_total_kwh": Decimal("1234.50"), "voltage_l1_v": Decimal("230.1")}
        ),
        "abc-02": ToyMeterDevice(
            {"energy_import_total_kwh": Decimal("77.00"), "voltage_l1_v": Decimal("229.4")}
        ),
    }
    LINES["toy-line"] = ToyLine(devices)
    yield LINES["toy-line"]
    del LINES["toy-line"]


@pytest.mark.asyncio
async def test_a_toy_protocol_is_polled_through_the_scheduler_into_the_buffer(
    toy: ToyPlugin, line: ToyLine, tmp_path: Path
) -> None:
    cfg = parse_config(TOY.format(line="toy-line", meters=METERS))
    bus = cfg.buses[0]
    assert isinstance(bus, ToyBus)  # the toy's own model, chosen by `protocol`
    assert bus.jitter == 2
    assert [m.meter_id for m in bus.meters] == ["toy-abc-01", "kiosk"]
    path = str(tmp_path / "buffer.sqlite")
    async with await Buffer.open(path, BufferConfig(), Metrics()) as buf:
        writes = WritePath(buf, Validator())
        sched = Scheduler(cfg, writes, Metrics())
        task = asyncio.create_task(sched.run())
        try:
            await asyncio.wait_for(sched.started.wait(), 5)
            # Two polls of each meter: the second shows the register moving on.
            await until(lambda: all(d.reads >= 2 for d in line.devices.values()), 10, "polls")
            await until(lambda: buf.head_seq >= 8, 5, "commits")
            snapshot = sched.snapshot().buses[0]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        batch = await buf.read("check", 0, 1000)
    assert snapshot.protocol == "toy"
    assert snapshot.link == "toy-line:1"
    assert [(m.meter_id, m.address, m.state) for m in snapshot.meters] == [
        ("toy-abc-01", "abc-01", "online"),
        ("kiosk", "abc-02", "online"),
    ]
    stored = [(r[1], r[2], r[3], r[4], r[6]) for r in batch.readings]
    poll = str(TimeSource.POLL)
    assert stored[:4] == [
        ("toy-abc-01", "energy_import_total_kwh", "1234.50", "kWh", poll),
        ("toy-abc-01", "voltage_l1_v", "230.1", "V", poll),
        ("kiosk", "energy_import_total_kwh", "77.00", "kWh", poll),
        ("kiosk", "voltage_l1_v", "229.4", "V", poll),
    ]
    totals = [r[3] for r in batch.readings if r[1] == "toy-abc-01" and r[2].startswith("energy")]
    assert totals[:2] == ["1234.50", "1234.51"]
    assert all(r[9] == 0 for r in batch.readings)  # validated, and nothing flagged


@pytest.mark.asyncio
async def test_a_silent_toy_meter_goes_offline_like_any_other(
    toy: ToyPlugin, line: ToyLine, tmp_path: Path
) -> None:
    line.devices["abc-02"].answering = False
    cfg = parse_config(TOY.format(line="toy-line", meters=METERS))
    path = str(tmp_path / "buffer.sqlite")
    async with await Buffer.open(path, BufferConfig(), Metrics()) as buf:
        sched = Scheduler(cfg, WritePath(buf, Validator()), Metrics())
        task = asyncio.create_task(sched.run())
        try:
            meters = sched.buses[0].meters
            await until(lambda: meters[1].health.state == "suspect", 10, "suspect")
            assert meters[0].health.state == "online"
            assert "no reply" in (meters[1].health.last_error or "")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_the_toy_validates_its_own_fields_and_runs_its_own_checks(toy: ToyPlugin) -> None:
    text = (
        TOY.format(
            line="toy-line",
            meters="""
[[buses.meters]]
tag = "ABC"
poll = ["fast"]

[[buses.meters]]
address = "000000000001"
poll = ["fast"]

[[buses.meters]]
tag = "abc-03"
poll = ["odd"]
""",
        )
        + '[poll_groups.odd]\ninterval = "1m"\nquantities = ["frequency_hz"]\n'
    )
    lines = [str(p) for p in check_config(text, file="toy.toml", env={}).problems]
    assert lines == [
        "toy.toml: buses[0].meters[0]: tag 'ABC' must look like 'abc-01'",
        "toy.toml: buses[0].meters[1].tag: Field required",
        "toy.toml: buses[0].meters[1].address: unknown key",
        "toy.toml: buses[0].meters[2].poll: a toy meter has no frequency_hz",
    ]
    # A toy key on a DL/T 645 bus, and a DL/T 645 key on a toy bus, are each unknown.
    mixed = TOY.format(line="toy-line", meters="").replace("jitter = 2", "max_gap = 3")
    mixed += '[[buses]]\nname = "d"\nprotocol = "dlt645-2007"\ntcp = { host = "h", port = 1 }\n'
    mixed += "jitter = 1\n"
    lines = [str(p) for p in check_config(mixed, file="toy.toml", env={}).problems]
    assert lines == [
        "toy.toml: buses[0].max_gap: unknown key",
        "toy.toml: buses[1].jitter: unknown key",
    ]


def test_the_toy_line_estimate_feeds_the_capacity_warning(toy: ToyPlugin) -> None:
    # Two meters of two values at half a second each, every second: twice the line.
    checked = check_config(TOY.format(line="toy-line", meters=METERS), file="t.toml", env={})
    assert checked.problems == []
    [warning] = [str(w) for w in checked.warnings if "buses[0]" in str(w)]
    assert "its poll schedule needs about 200% of the line" in warning


def test_schema_docs_and_cli_follow_the_registry(
    toy: ToyPlugin, capsys: pytest.CaptureFixture[str]
) -> None:
    mapping = json_schema()["properties"]["buses"]["items"]["discriminator"]["mapping"]
    assert mapping["toy"] == "#/$defs/ToyBus"
    assert '## `[[buses]]` with `protocol = "toy"`' in reference_markdown()
    assert "| `jitter` |" in reference_markdown()
    args = build_parser().parse_args(["read", "--tcp", "h:1", "--protocol", "toy"])
    assert args.protocol == "toy"
    # The toy has no one-shot read: the CLI says so, naming it, instead of failing.
    assert main(["read", "--tcp", "h:1", "--protocol", "toy"]) == 2
    assert "--protocol toy: no one-shot read" in capsys.readouterr().err


def test_protocol_names_exist_once() -> None:
    before = protocol_names()
    assert before[:4] == ("dlt645-2007", "dlt645-1997", "modbus-rtu", "modbus-tcp")
    with pytest.raises(ValueError, match="protocol 'modbus-tcp' is already served"):
        register(type("Clash", (ToyPlugin,), {"names": ("toy", "modbus-tcp")})())
    assert protocol_names() == before  # nothing of a refused plugin stays
    with pytest.raises(KeyError, match="no protocol 'toy'"):
        plugin_for("toy")
    [problem] = check_config(
        '[[buses]]\nname = "b"\nprotocol = "toy"\ntcp = { host = "h", port = 1 }\n', env={}
    ).problems
    assert str(problem) == (
        "<config>: buses[0].protocol: Input should be 'dlt645-2007', 'dlt645-1997', "
        "'modbus-rtu' or 'modbus-tcp'"
    )
