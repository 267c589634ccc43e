"""Config loading: every problem named by file and key, env substitution, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import ConfigError, load_config, parse_config
from gateway.config.base import parse_duration

VALID = """
[gateway]
name = "box-1"
timezone = "Asia/Shanghai"
state_dir = "${STATE:-/tmp/mgw}"

[poll_groups.energy]
interval = "15m"
quantities = ["energy_import_total_kwh"]

[[buses]]
name = "rs485-1"
protocol = "dlt645-2007"
serial = { port = "${PORT}", baud = 2400 }

[[buses.meters]]
address = "000000000001"
poll = ["energy"]
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="box.toml", env=env or {})
    return [str(p) for p in info.value.problems]


def test_valid_config_substitutes_environment() -> None:
    cfg = parse_config(VALID, file="box.toml", env={"PORT": "/dev/ttyUSB0"})
    assert cfg.buses[0].serial is not None
    assert cfg.buses[0].serial.port == "/dev/ttyUSB0"
    assert cfg.gateway.state_dir == "/tmp/mgw"
    assert cfg.poll_groups["energy"].interval == 900.0
    assert cfg.buses[0].meters[0].meter_id == "000000000001"


def test_missing_environment_variable_is_named() -> None:
    assert problems(VALID) == [
        "box.toml: buses[0].serial.port: environment variable PORT is not set"
    ]


def test_unknown_keys_and_bad_values_are_all_reported() -> None:
    text = VALID.replace('name = "box-1"', 'name = "box-1"\ncolour = "red"').replace(
        '"15m"', '"soon"'
    )
    found = problems(text, {"PORT": "/dev/x"})
    assert "box.toml: gateway.colour: unknown key" in found
    assert any(p.startswith("box.toml: poll_groups.energy.interval: not a duration") for p in found)


def test_cross_references_are_checked() -> None:
    text = VALID.replace('poll = ["energy"]', 'poll = ["hourly"]')
    assert problems(text, {"PORT": "/dev/x"}) == [
        "box.toml: buses[0].meters[0].poll: no poll group named 'hourly'"
    ]


def test_bad_toml_names_the_file() -> None:
    found = problems("[gateway\n")
    assert len(found) == 1
    assert found[0].startswith("box.toml: not valid TOML")


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("10s", 10.0), ("15m", 900.0), ("2h", 7200.0), (3, 3.0)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_check_config_exits_2_and_prints_each_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('[http]\nport = "eighty"\nextra = 1\n')
    assert main(["check-config", str(f)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        f"{f}: http.port: Input should be a valid integer, unable to parse string as an integer"
        in err
    )
    assert f"{f}: http.extra: unknown key" in err


def test_check_config_ok_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "ok.toml"
    f.write_text(VALID.replace("${PORT}", "/dev/ttyUSB0"))
    assert main(["check-config", str(f)]) == 0
    assert "ok: gateway 'box-1', 1 buses, 1 meters" in capsys.readouterr().out
    assert load_config(f).gateway.name == "box-1"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
