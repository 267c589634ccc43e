"""The config reference (schema and docs) is generated from the models and kept in sync."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.cli.reference import DOCS_PATH, SCHEMA_PATH, json_schema, outputs, reference_markdown
from gateway.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_generated_files_are_up_to_date() -> None:
    for path, text in outputs(ROOT).items():
        assert path.exists(), f"{path} is missing: run 'metergw schema --write'"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is stale: run '.venv/bin/metergw schema --write'"
        )


def test_check_flag_reports_a_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "--write", "--root", str(tmp_path)]) == 0
    assert main(["schema", "--check", "--root", str(tmp_path)]) == 0
    (tmp_path / DOCS_PATH).write_text("# edited by hand\n", encoding="utf-8")
    assert main(["schema", "--check", "--root", str(tmp_path)]) == 1
    assert f"{tmp_path / DOCS_PATH}: out of date" in capsys.readouterr().err


def test_schema_covers_every_section_with_descriptions() -> None:
    schema = json_schema()
    assert set(schema["properties"]) == set(Config.model_fields)
    assert schema["additionalProperties"] is False
    gateway = schema["$defs"]["GatewaySection"]["properties"]
    assert "shutdown_timeout" in gateway
    assert "description" in gateway["state_dir"]
    # Durations accept both seconds and "15m"-style strings, as the loader does.
    kinds = {alt["type"] for alt in gateway["shutdown_timeout"]["anyOf"]}
    assert kinds == {"number", "string"}


def test_demo_config_loads_and_its_sections_are_documented() -> None:
    cfg = load_config(ROOT / "config/demo.toml")
    assert cfg.embedded_broker.enabled
    assert "local" in cfg.sinks
    doc = reference_markdown()
    raw = tomllib.loads((ROOT / "config/demo.toml").read_text(encoding="utf-8"))
    for section, values in raw.items():
        heading = f"[[{section}]]" if isinstance(values, list) else f"[{section}"
        assert heading in doc, f"section {section} is not in {DOCS_PATH}"
    for key in raw["gateway"]:
        assert f"| `{key}` |" in doc


def test_schema_file_is_valid_json_schema_document() -> None:
    data = json.loads((ROOT / SCHEMA_PATH).read_text(encoding="utf-8"))
    assert data["$schema"].startswith("https://json-schema.org/")
    assert data["title"] == "metergw configuration"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_is_hardened() -> None:
    # --threshold is in tenths: fail if the exposure rating is above 2.0.
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            "--threshold=20",
            str(ROOT / "systemd/metergw.service"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Overall exposure level" in result.stdout


def test_every_exported_metric_is_documented() -> None:
    from gateway.metrics import Metrics

    doc = (ROOT / "docs/operations.md").read_text(encoding="utf-8")
    for family in Metrics().registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in doc, f"{name} is missing from docs/operations.md"
