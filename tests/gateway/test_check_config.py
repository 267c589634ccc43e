"""``metergw check-config``: every problem in one pass, warnings, "did you mean",
and paths relative to the config file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import check_config, load_config, parse_config
from protocols.modbus_profile import BUILTIN_PROFILE_DIR

# Eleven problems of every kind, each of which used to hide the ones after it:
# an unset variable, unknown keys, a bad value, a bad quantity, a bad group, a
# meter naming a missing group, a quantity the protocol cannot read, a missing
# profile, a bad time zone.
MANY_PROBLEMS = """
[gateway]
name = "box"
timezon = "Asia/Shanghai"

[poll_groups.energy]
interval = "soon"
quantities = ["energy_import_total_kwh"]

[poll_groups.grid]
interval = "1m"
quantities = ["voltage_l1", "frequency_hz"]

[poll_groups.inst]
intervl = "1m"
quantities = ["voltage_l1_v"]

[[buses]]
name = "rs485-1"
protocol = "dlt645-1997"
serial = { port = "${PORT}" }

[[buses.meters]]
adress = "000000000001"
poll = ["energy"]

[[buses.meters]]
address = "000000000002"
poll = ["enrgy"]

[[buses.meters]]
address = "000000000003"
poll = ["grid"]

[[buses]]
name = "mb"
protocol = "modbus-tcp"
tcp = { host = "127.0.0.1", port = 502 }

[[buses.meters]]
unit = 1
profile = "no-such-profile"
poll = ["grid"]

[[buses.meters]]
unit = 2
profile = "sdm630"
poll = ["grid"]
timezone = "Asia/Shangai"

[sinks.local]
"""


def test_every_problem_is_reported_in_one_pass() -> None:
    checked = check_config(MANY_PROBLEMS, file="box.toml", env={})
    assert checked.config is None
    lines = [str(p) for p in checked.problems]
    assert lines[:9] == [
        "box.toml: gateway.timezon: unknown key; did you mean 'timezone'?",
        "box.toml: poll_groups.energy.interval: not a duration: 'soon' "
        "(use seconds or '500ms', '10s', '15m', '1h')",
        "box.toml: poll_groups.grid.quantities: unknown quantity key(s): 'voltage_l1' "
        "(did you mean 'voltage_l1_v'?)",
        "box.toml: poll_groups.inst.interval: Field required",
        "box.toml: poll_groups.inst.intervl: unknown key; did you mean 'interval'?",
        "box.toml: buses[0].serial.port: environment variable PORT is not set",
        "box.toml: buses[0].meters[0].adress: unknown key; did you mean 'address'?",
        "box.toml: buses[0].meters[1].poll: no poll group named 'enrgy'; did you mean 'energy'?",
        "box.toml: buses[0].meters[2].poll: no dlt645-1997 data identifier for frequency_hz",
    ]
    assert lines[9].startswith(
        "box.toml: buses[1].meters[0].profile: profile 'no-such-profile' not found"
    )
    assert lines[10:] == [
        "box.toml: buses[1].meters[1].timezone: unknown time zone 'Asia/Shangai'; "
        "did you mean 'Asia/Shanghai'?"
    ]
    assert checked.warnings == []  # the file's meters all have poll groups


def test_errors_after_a_set_aside_meter_keep_their_place() -> None:
    # The bad first meter is set aside; the second meter's problem still names index 1.
    text = """
[poll_groups.energy]
interval = "15m"
quantities = ["energy_import_total_kwh"]
[[buses]]
name = "a"
protocol = "dlt645-2007"
tcp = { host = "dtu", port = 9000 }
[[buses.meters]]
address = "12"
poll = ["energy"]
[[buses.meters]]
address = "000000000002"
poll = ["hourly"]
[[buses]]
name = "a"
protocol = "dlt645-2007"
tcp = { host = "dtu", port = 9001 }
"""
    lines = [str(p) for p in check_config(text, file="f.toml", env={}).problems]
    assert lines == [
        "f.toml: buses[0].meters[0]: address '12' must be 12 decimal digits",
        "f.toml: buses[0].meters[1].poll: no poll group named 'hourly'",
        "f.toml: buses[1].name: duplicate bus name 'a'",
    ]


def test_check_config_prints_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "box.toml"
    f.write_text(MANY_PROBLEMS.replace("${PORT}", "/dev/ttyUSB0"), encoding="utf-8")
    assert main(["check-config", str(f)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 10
    assert all(line.startswith(f"{f}: ") for line in lines)
    assert main(["run", "-c", str(f)]) == 2  # the daemon refuses it the same way
    assert capsys.readouterr().err.splitlines() == lines
    assert main(["check-config", "-c", str(f)]) == 2  # -c FILE, as every other command
    assert capsys.readouterr().err.splitlines() == lines


def test_check_config_wants_one_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "a.toml"
    f.write_text("", encoding="utf-8")
    for argv in (["check-config"], ["check-config", str(f), "-c", str(tmp_path / "b.toml")]):
        assert main(argv) == 2
        assert "name one config file" in capsys.readouterr().err
    assert main(["check-config", str(f), "-c", str(f)]) == 0  # the same file twice is one


def test_warnings_do_not_fail_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "quiet.toml"
    f.write_text(
        '[[buses]]\nname = "a"\nprotocol = "dlt645-2007"\ntcp = { host = "dtu", port = 9000 }\n'
        '[[buses.meters]]\naddress = "000000000001"\n',
        encoding="utf-8",
    )
    assert main(["check-config", str(f)]) == 0
    out, err = capsys.readouterr()
    assert "ok:" in out
    assert "2 warning(s)" in out
    assert err.splitlines() == [
        f"warning: {f}: buses[0].meters[0].poll: meter '000000000001' is in no poll group, "
        "so it is never read (name a [poll_groups.NAME] in poll = [...])",
        f"warning: {f}: sinks: no sink: readings are kept in the buffer and forwarded nowhere "
        "(add [sinks.influx], [sinks.mqtt] or [sinks.local])",
    ]


def test_an_empty_config_warns_of_no_source_and_no_sink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "empty.toml"
    f.write_text("", encoding="utf-8")
    assert main(["check-config", str(f)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {f}: no source of readings: no [[buses.meters]] and no [ingest]" in err
    assert f"warning: {f}: sinks: no sink" in err
    ingest = '[ingest]\nbroker = { url = "mqtt://127.0.0.1:1883" }\n[sinks.local]\n'
    assert check_config(ingest, env={}).warnings == []


def test_relative_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "maps").mkdir(parents=True)
    shutil.copy(BUILTIN_PROFILE_DIR / "sdm630.toml", site / "maps" / "sdm.toml")
    f = site / "gw.toml"
    f.write_text(
        """
[gateway]
state_dir = "state"
[buffer]
path = "data/buffer.sqlite"
[sinks.local]
path = "/srv/local.sqlite"
[poll_groups.grid]
interval = "1m"
quantities = ["voltage_l1_v"]
[[buses]]
name = "mb"
protocol = "modbus-tcp"
tcp = { host = "127.0.0.1", port = 502 }
[[buses.meters]]
unit = 1
profile = "maps/sdm.toml"
poll = ["grid"]
[[buses.meters]]
unit = 2
profile = "sdm630"
poll = ["grid"]
[[buses]]
name = "rs485"
protocol = "dlt645-2007"
serial = { port = "../ttys/line-1" }
""",
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # Also when the file is named by a relative path from another directory.
    cfg = load_config(Path("..") / "site" / "gw.toml")
    assert cfg.gateway.state_dir == str(site / "state")
    assert cfg.buffer.path == str(site / "data" / "buffer.sqlite")
    assert "local" in cfg.sinks
    assert cfg.sinks["local"].path == "/srv/local.sqlite"  # absolute paths as given
    assert cfg.buses[0].meters[0].profile == str(site / "maps" / "sdm.toml")
    assert cfg.buses[0].meters[1].profile == "sdm630"  # a name, found by the profile lookup
    assert cfg.buses[1].serial is not None
    assert cfg.buses[1].serial.port == str(tmp_path / "ttys" / "line-1")
    default_buffer = parse_config('[gateway]\nstate_dir = "s"\n', file=str(f), env={})
    assert default_buffer.buffer_path() == f"{site / 's'}/buffer.sqlite"
