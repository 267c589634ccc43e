"""The built-in protocols in the plugin shape: each validates its own fields, the
messages and key paths of check-config stay what they were, and no core module
dispatches on a protocol name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.config import check_config, parse_config
from gateway.scheduler.meters import build_meters
from gateway.southbound import plugin_for, plugins, protocol_names
from gateway.southbound.dlt645.config import Dlt645Bus, Dlt645Meter
from gateway.southbound.modbus.config import ModbusBus, ModbusMeter

ROOT = Path(__file__).resolve().parents[3]


def problems(text: str) -> list[str]:
    return [str(p) for p in check_config(text, file="f.toml", env={}).problems]


def bus(protocol: str, link: str, meters: str, extra: str = "") -> str:
    return f'[[buses]]\nname = "b"\nprotocol = "{protocol}"\n{link}\n{extra}\n{meters}'


SERIAL = 'serial = { port = "/dev/ttyUSB0" }'
TCP = 'tcp = { host = "dtu", port = 9000 }'


def test_each_protocol_is_validated_by_its_own_model() -> None:
    for protocol in ("dlt645-2007", "dlt645-1997"):
        cfg = parse_config(bus(protocol, SERIAL, '[[buses.meters]]\naddress = "000000000001"'))
        b = cfg.buses[0]
        assert isinstance(b, Dlt645Bus)
        assert isinstance(b.meters[0], Dlt645Meter)
        # Line defaults by edition: 2400 8E1, the 1997 edition 1200.
        assert b.serial is not None
        assert (b.serial.baud, b.serial.parity) == (
            (2400, "E") if protocol == "dlt645-2007" else (1200, "E")
        )
    for protocol, link in (("modbus-rtu", SERIAL), ("modbus-rtu", TCP), ("modbus-tcp", TCP)):
        cfg = parse_config(bus(protocol, link, '[[buses.meters]]\nunit = 3\nprofile = "sdm630"'))
        b = cfg.buses[0]
        assert isinstance(b, ModbusBus)
        assert isinstance(b.meters[0], ModbusMeter)
        assert b.meters[0].meter_id == "unit-3"
        if b.serial is not None:
            assert (b.serial.baud, b.serial.parity) == (9600, "N")
    assert protocol_names() == ("dlt645-2007", "dlt645-1997", "modbus-rtu", "modbus-tcp")
    assert [p.names for p in plugins()] == [
        ("dlt645-2007", "dlt645-1997"),
        ("modbus-rtu", "modbus-tcp"),
    ]
    assert plugin_for("dlt645-1997") is plugin_for("dlt645-2007")


def test_a_meter_carries_only_its_own_protocols_keys() -> None:
    dlt = bus("dlt645-2007", TCP, '[[buses.meters]]\naddress = "000000000001"\nunit = 3')
    assert problems(dlt) == ["f.toml: buses[0].meters[0].unit: unknown key"]
    # A DL/T 645 address on a Modbus meter: no "did you mean", Modbus meters have none.
    modbus = bus("modbus-tcp", TCP, '[[buses.meters]]\naddress = "000000000001"\nunit = 3')
    assert problems(modbus) == ["f.toml: buses[0].meters[0].address: unknown key"]
    # A bus's keys are its protocol's: max_gap is Modbus only, time_sync DL/T 645 only.
    assert problems(bus("dlt645-2007", TCP, "", "max_gap = 3")) == [
        "f.toml: buses[0].max_gap: unknown key"
    ]
    sync = "[buses.time_sync]\nenabled = true"
    assert problems(bus("modbus-tcp", TCP, "", sync)) == [
        "f.toml: buses[0]: time_sync: only DL/T 645 meters take a broadcast time"
    ]


def test_missing_and_misspelt_keys_keep_their_messages() -> None:
    assert problems(bus("dlt645-2007", TCP, '[[buses.meters]]\npoll = ["x"]')) == [
        "f.toml: buses[0].meters[0]: a DL/T 645 meter needs an 'address'"
    ]
    # A typo is reported as such (with a hint from the protocol's own keys), not as a
    # missing address as well.
    assert problems(bus("dlt645-2007", TCP, '[[buses.meters]]\nadress = "000000000001"')) == [
        "f.toml: buses[0].meters[0].adress: unknown key; did you mean 'address'?"
    ]
    assert problems(bus("modbus-rtu", SERIAL, "[[buses.meters]]\nunit = 1")) == [
        "f.toml: buses[0].meters[0]: a Modbus meter needs 'unit' and 'profile'"
    ]
    assert problems(bus("modbus-tcp", SERIAL, "")) == [
        "f.toml: buses[0]: protocol 'modbus-tcp' needs a 'tcp' link"
    ]
    assert problems(bus("dlt645-2007", f"{SERIAL}\n{TCP}", "")) == [
        "f.toml: buses[0]: a bus needs exactly one of 'serial' or 'tcp'"
    ]
    assert problems('[[buses]]\nname = "b"\ntcp = { host = "h", port = 1 }\n') == [
        "f.toml: buses[0].protocol: Field required"
    ]


def test_a_meter_run_names_where_its_meter_sits() -> None:
    text = (
        '[poll_groups.e]\ninterval = "15m"\nquantities = ["energy_import_total_kwh"]\n'
        + bus("dlt645-2007", TCP, '[[buses.meters]]\naddress = "000000000007"\npoll = ["e"]')
        + '\n[[buses]]\nname = "m"\nprotocol = "modbus-tcp"\ntcp = { host = "h", port = 502 }\n'
        + '[[buses.meters]]\nunit = 5\nprofile = "sdm630"\npoll = ["e"]\n'
    )
    cfg = parse_config(text)
    runs = [
        (r.meter_id, r.address)
        for b in cfg.buses
        for r in build_meters(b, cfg.poll_groups, "Asia/Shanghai")
    ]
    assert runs == [("000000000007", "000000000007"), ("unit-5", "5")]


@pytest.mark.parametrize("folder", ["config", "scheduler", "cli", "status"])
def test_no_core_module_dispatches_on_a_protocol_name(folder: str) -> None:
    # The protocol name list exists once (the plugins' bus models); the core asks the
    # registry. (cli/decode.py is the DL/T 645 frame decoder: a protocol's own tool.)
    pattern = re.compile(r'startswith\("(dlt645|modbus)|protocol ==|"(dlt645|modbus)-\w+"')
    for path in sorted((ROOT / "gateway" / folder).rglob("*.py")):
        if path.name == "decode.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert not pattern.search(text), f"{path} names a protocol"


def test_the_schema_file_tells_buses_apart_by_protocol() -> None:
    schema = json.loads((ROOT / "config/schema.json").read_text(encoding="utf-8"))
    items = schema["properties"]["buses"]["items"]
    assert items["discriminator"]["propertyName"] == "protocol"
    assert set(items["discriminator"]["mapping"]) == set(protocol_names())
    dlt, modbus = schema["$defs"]["Dlt645Meter"], schema["$defs"]["ModbusMeter"]
    assert dlt["required"] == ["address"]
    assert sorted(modbus["required"]) == ["profile", "unit"]
    assert "unit" not in dlt["properties"]
    assert "address" not in modbus["properties"]
