"""Validation thresholds per Modbus profile and per meter, and the README's flag table."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from gateway.config import ConfigError, parse_config
from gateway.config.southbound import meter_thresholds
from gateway.model import Quality
from protocols.modbus_profile import BUILTIN_PROFILE_DIR

ROOT = Path(__file__).resolve().parents[2]


def test_every_quality_flag_is_in_the_readme_table() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quality flags", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {m.group(1): line for line in rows if (m := re.match(r"\| `(\w+)` \|", line))}
    flags = {f.name.lower() for f in Quality if f and f.name}
    assert flags == set(documented), "README.md: Quality flags table and Quality differ"
    for name, line in documented.items():
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 3, f"{name}: flag, what triggers it, what to do"
        assert all(cells), f"{name}: needs what triggers it and what to do"


def config_text(profile: str, meter_table: str = "") -> str:
    return f"""
[validation]
max_power_kw = 500
max_clock_skew = "2m"

[poll_groups.fast]
interval = "1m"
quantities = ["energy_import_total_kwh"]

[[buses]]
name = "mb-1"
protocol = "modbus-tcp"
tcp = {{ host = "127.0.0.1", port = 502 }}

[[buses.meters]]
name = "plain"
unit = 1
profile = "sdm630"
poll = ["fast"]

[[buses.meters]]
name = "small"
unit = 2
profile = "{profile}"
poll = ["fast"]
{meter_table}
"""


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    """A config directory whose profiles/ holds sdm630 with a [validation] table."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (BUILTIN_PROFILE_DIR / "sdm630.toml").read_text()
    text += (
        "\n[validation]\nmax_power_kw = 60\nranges = { voltage_l1_v = { min = 180, max = 260 } }\n"
    )
    (profiles / "small-sdm.toml").write_text(text.replace('name = "sdm630"', 'name = "small-sdm"'))
    shutil.copy(BUILTIN_PROFILE_DIR / "sdm630.toml", profiles / "sdm630.toml")
    return tmp_path


def test_meter_over_profile_over_defaults(profile_dir: Path) -> None:
    table = "[buses.meters.validation]\nmax_power_kw = 25\n"
    table += "ranges = { current_l1_a = { min = 0, max = 80 } }\n"
    file = str(profile_dir / "metergw.toml")
    cfg = parse_config(config_text("small-sdm", table), file=file)
    per = meter_thresholds(cfg.validation, cfg.buses, (profile_dir / "profiles",))
    assert set(per) == {"small"}  # "plain" keeps the defaults
    small = per["small"]
    assert small.max_power_kw == 25  # the meter's
    assert small.ranges["voltage_l1_v"].min == 180  # the profile's
    assert small.ranges["current_l1_a"].max == 80  # the meter's
    assert small.max_clock_skew == 120  # the [validation] default
    assert small.ranges["frequency_hz"] == cfg.validation.ranges["frequency_hz"]

    only_profile = parse_config(config_text("small-sdm"), file=file)
    per = meter_thresholds(only_profile.validation, only_profile.buses, (profile_dir / "profiles",))
    assert per["small"].max_power_kw == 60


def test_a_bad_meter_validation_key_names_the_meter() -> None:
    table = "[buses.meters.validation]\nmax_power_kw = -1\nspike = 3\n"
    with pytest.raises(ConfigError) as info:
        parse_config(config_text("sdm630", table))
    text = str(info.value)
    assert "buses[0].meters[1].validation.max_power_kw" in text
    assert "buses[0].meters[1].validation.spike: unknown key" in text


def test_a_bad_profile_validation_table_names_the_file(profile_dir: Path) -> None:
    bad = profile_dir / "profiles" / "small-sdm.toml"
    bad.write_text(bad.read_text().replace("max_power_kw = 60", "max_power_kw = 60\nspiky = 1"))
    with pytest.raises(ConfigError) as info:
        parse_config(config_text("small-sdm"), file=str(profile_dir / "metergw.toml"))
    text = str(info.value)
    assert "buses[0].meters[1].profile" in text
    assert "small-sdm.toml: validation.spiky: unknown key" in text
