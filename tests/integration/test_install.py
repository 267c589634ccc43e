"""The wheel, installed as an operator installs it: a fresh venv, no repository around.

Built once per module from the source tree (``python -m build``: an sdist,
then the wheel from the sdist, so a file the sdist forgets fails here too),
installed with pip into a new venv (dependencies from pip's configured index
or cache), then run from a directory with no ``config/`` in it: every profile
and example must come from the package itself.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd/metergw.service"
EXAMPLE_ENV = {
    "METERGW_MQTT_URL": "mqtt://broker.example:1883",
    "METERGW_INFLUX_URL": "http://tsdb.example:8086",
    "METERGW_INFLUX_TOKEN": "not-a-secret",
    "METERGW_INFLUX_ORG": "utility",
    "METERGW_INFLUX_BUCKET": "meters",
    "METERGW_STATE_DIR": "/var/lib/metergw",
}
"""What config/examples/*.toml take from the environment (their header lists it)."""

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@dataclass(frozen=True)
class Installed:
    """A venv with the wheel installed, and a working directory far from the repository."""

    venv: Path
    wheel: Path
    cwd: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(
        self, *argv: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        # Neither the repository nor the test's own venv may leak in.
        clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return subprocess.run(
            [self.bin(argv[0]), *argv[1:]],
            cwd=self.cwd,
            env={**clean, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def data_dir(self) -> Path:
        """Where the installed package keeps its data (profiles, examples)."""
        code = "import importlib.resources as r; print(r.files('metergw_data'))"
        out = self.run("python", "-c", code)
        assert out.returncode == 0, out.stderr
        return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    dist = base / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("metergw-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    cwd = base / "elsewhere"
    cwd.mkdir()
    return Installed(venv, wheel, cwd)


def test_the_daemon_installs_without_the_demo_extras(installed: Installed) -> None:
    out = installed.run("pip", "list", "--format=json")
    names = {p["name"].lower() for p in json.loads(out.stdout)}
    assert "metergw" in names
    # amqtt (and its typer, argon2, websockets) and aiohttp are the [demo] and [sim] extras.
    assert not names & {"amqtt", "aiohttp", "typer", "argon2-cffi", "websockets"}, names
    check = installed.run("python", "-c", "import gateway.daemon, gateway.cli.run")
    assert check.returncode == 0, check.stderr


def test_metergw_says_its_version(installed: Installed) -> None:
    out = installed.run("metergw", "--version")
    if out.returncode == 2 and "--version" not in installed.run("metergw", "--help").stdout:
        # SWITCH_TO_VERSION: `metergw --version` comes with the field-tools branch (#16);
        # once it is merged this branch is dead and can go.
        helped = installed.run("metergw", "--help")
        assert helped.returncode == 0, helped.stderr
        assert "check-config" in helped.stdout
        return
    assert out.returncode == 0, out.stderr
    assert "0." in out.stdout + out.stderr


def test_the_wheel_carries_profiles_and_example_configs(installed: Installed) -> None:
    data = installed.data_dir()
    # Installed into site-packages, not found through the repository.
    assert ROOT not in data.parents
    shipped = {p.name for p in (ROOT / "config/profiles").glob("*.toml")}
    assert shipped
    assert {p.name for p in (data / "profiles").glob("*.toml")} == shipped
    for rel in ("demo.toml", "sim/demo.toml", "schema.json"):
        assert (data / rel).is_file(), rel
    examples = {p.name for p in (ROOT / "config/examples").iterdir() if p.is_file()}
    assert {p.name for p in (data / "examples").iterdir()} >= examples


def test_check_config_passes_on_every_shipped_example(installed: Installed) -> None:
    data = installed.data_dir()
    configs = [*sorted((data / "examples").glob("*.toml")), data / "demo.toml"]
    assert len(configs) >= 2
    for config in configs:
        out = installed.run("metergw", "check-config", str(config), env=EXAMPLE_ENV)
        assert out.returncode == 0, f"{config.name}:\n{out.stdout}{out.stderr}"


def test_a_config_finds_a_packaged_profile_by_name(installed: Installed, tmp_path: Path) -> None:
    # No profiles/ next to this config: sdm630 must come from the package.
    config = tmp_path / "modbus.toml"
    config.write_text(
        '[gateway]\nstate_dir = "state"\n'
        '[poll_groups.energy]\ninterval = "15s"\nquantities = ["energy_import_total_kwh"]\n'
        '[[buses]]\nname = "m"\nprotocol = "modbus-tcp"\n'
        'tcp = { host = "127.0.0.1", port = 1502 }\n'
        '[[buses.meters]]\nunit = 1\nprofile = "sdm630"\npoll = ["energy"]\n'
        '[[buses.meters]]\nunit = 2\nprofile = "nosuchmeter"\npoll = ["energy"]\n',
        encoding="utf-8",
    )
    out = installed.run("metergw", "check-config", str(config))
    assert out.returncode == 2
    # Only the unknown profile is a problem, and the message says where it looked.
    problems = [line for line in out.stdout.splitlines() + out.stderr.splitlines() if line]
    assert [p for p in problems if "sdm630" in p] == [], problems
    missing = next(p for p in problems if "nosuchmeter" in p)
    assert str(tmp_path / "profiles") in missing
    assert "/etc/metergw/profiles" in missing
    assert str(installed.data_dir() / "profiles") in missing


@pytest.fixture
def modbus_meter() -> Iterator[int]:
    """The simulator (from the repository's venv) serving an SDM630 on Modbus TCP."""
    metersim = Path(sys.executable).parent / "metersim"
    proc = subprocess.Popen(
        [str(metersim), "serve", "modbus", "--tcp", "127.0.0.1:0", "--profile", "sdm630"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # It prints "modbus<TAB>modbus-tcp<TAB>HOST:PORT" once it listens.
        line = proc.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert found, f"metersim said {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        yield int(found.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_read_a_meter_with_a_packaged_profile(installed: Installed, modbus_meter: int) -> None:
    out = installed.run(
        "metergw",
        "read",
        "--tcp",
        f"127.0.0.1:{modbus_meter}",
        "--protocol",
        "modbus-tcp",
        "--unit",
        "1",
        "--profile",
        "sdm630",
        "--key",
        "voltage_l1_v",
        "--json",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "voltage_l1_v" in out.stdout
    values = [float(v) for v in re.findall(r'"v(?:alue)?":\s*"?([0-9.]+)', out.stdout)]
    assert values, out.stdout
    assert all(150 < v < 300 for v in values), out.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_embedded_broker_asks_for_the_demo_extra(installed: Installed, tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(
        f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n'
        "[http]\nenabled = false\n"
        f"[embedded_broker]\nenabled = true\nport = {_free_port()}\n"
        "[sinks.local]\nenabled = true\n",
        encoding="utf-8",
    )
    out = installed.run("metergw", "run", "-c", str(config), timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "metergw[demo]" in out.stdout + out.stderr


def test_the_simulators_control_api_asks_for_the_sim_extra(
    installed: Installed, tmp_path: Path
) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        '[control]\nhost = "127.0.0.1"\nport = 0\n'
        '[[modbus]]\nname = "m"\ntcp = "127.0.0.1:0"\nprofile = "sdm630"\nunits = [1]\n',
        encoding="utf-8",
    )
    out = installed.run("metersim", "run", str(scenario), timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "metergw[sim]" in out.stderr


def test_the_units_documentation_is_installed(installed: Installed) -> None:
    unit = UNIT.read_text(encoding="utf-8")
    docs = re.findall(r"^Documentation=(\S+)", unit, flags=re.M)
    assert docs
    for doc in docs:
        path = doc.removeprefix("file://")
        assert path.startswith("/opt/metergw/"), doc
        # The unit's /opt/metergw is this venv.
        assert (installed.venv / path.removeprefix("/opt/metergw/")).is_file(), doc
    assert (installed.venv / "share/metergw/metergw.service").read_text(encoding="utf-8") == unit


def test_the_unit_notifies_and_reloads() -> None:
    service = _section(UNIT.read_text(encoding="utf-8"), "Service")
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["WatchdogSec"] == ["30"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["Restart"] == ["on-failure"]


def _section(text: str, name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            continue
        if current == name:
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_pyproject_extras_keep_make_test_and_make_demo_working() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    assert "amqtt" not in runtime
    assert "aiohttp" not in runtime
    assert any(d.startswith("amqtt") for d in extras["demo"])
    assert any(d.startswith("aiohttp") for d in extras["sim"])
    assert "metergw[demo]" in extras["dev"]
    assert "metergw[sim]" in extras["demo"]
