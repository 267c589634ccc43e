"""Where a config's Modbus profiles come from: its folder, /etc/metergw, the package."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.config.loader import SYSTEM_PROFILE_DIR, profile_dirs_for
from protocols.modbus_profile import BUILTIN_PROFILE_DIR, resolve_profile

# A profile with one register only: a poll group asking for more shows which file was used.
VOLTAGE_ONLY = """
[profile]
name = "{name}"
function = 4
type = "float32"
[[registers]]
key = "voltage_l1_v"
address = 0
"""


def modbus_config(folder: Path, profile: str, quantities: str = '"voltage_l1_v"') -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metergw.toml"
    path.write_text(
        '[gateway]\nstate_dir = "state"\n'
        f'[poll_groups.g]\ninterval = "15s"\nquantities = [{quantities}]\n'
        '[[buses]]\nname = "m"\nprotocol = "modbus-tcp"\n'
        'tcp = { host = "127.0.0.1", port = 1502 }\n'
        f'[[buses.meters]]\nunit = 1\nprofile = "{profile}"\npoll = ["g"]\n',
        encoding="utf-8",
    )
    return path


def test_lookup_order_is_config_folder_then_etc_then_package(tmp_path: Path) -> None:
    config = tmp_path / "site" / "metergw.toml"
    assert profile_dirs_for(str(config)) == (
        (tmp_path / "site" / "profiles").resolve(),
        SYSTEM_PROFILE_DIR,
    )
    assert Path("/etc/metergw/profiles") == SYSTEM_PROFILE_DIR
    # The package's profiles come last, found through importlib.resources.
    packaged = Path(str(importlib.resources.files("metergw_data") / "profiles"))
    assert packaged == BUILTIN_PROFILE_DIR
    assert resolve_profile("sdm630", profile_dirs_for(str(config))).source == str(
        packaged / "sdm630.toml"
    )


def test_a_profile_in_the_configs_folder_wins_over_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "sdm630.toml").write_text(VOLTAGE_ONLY.format(name="site-sdm630"))
    ok = modbus_config(tmp_path, "sdm630")
    assert load_config(ok, env={}).buses[0].meters[0].profile == "sdm630"
    # The shipped sdm630 has energy registers; the site's copy does not, so this fails.
    energy = modbus_config(tmp_path, "sdm630", '"voltage_l1_v", "energy_import_total_kwh"')
    with pytest.raises(ConfigError, match="profile 'site-sdm630' has no register for energy"):
        load_config(energy, env={})


def test_a_profile_path_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "meters").mkdir(parents=True)
    (site / "meters" / "acme.toml").write_text(VOLTAGE_ONLY.format(name="acme"))
    config = modbus_config(site, "meters/acme.toml")
    # Run from somewhere else, as systemd does (its working directory is /).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(config, env={})
    assert Path(cfg.buses[0].meters[0].profile or "").resolve() == site / "meters" / "acme.toml"
    # An absolute path stays as it is.
    absolute = str(site / "meters" / "acme.toml")
    other = modbus_config(tmp_path / "other", absolute)
    assert load_config(other, env={}).buses[0].meters[0].profile == absolute


def test_a_missing_profile_names_every_place_looked_in(tmp_path: Path) -> None:
    config = modbus_config(tmp_path, "nosuchmeter")
    with pytest.raises(ConfigError) as info:
        load_config(config, env={})
    message = str(info.value)
    for place in (tmp_path / "profiles", SYSTEM_PROFILE_DIR, BUILTIN_PROFILE_DIR):
        assert str(place) in message
