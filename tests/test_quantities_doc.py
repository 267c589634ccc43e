"""docs/quantities.md lists exactly the keys of the quantity registry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.cli import main
from protocols.quantities import QUANTITIES

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "quantities.md"


def _keys(markdown: str) -> list[str]:
    return re.findall(r"^\| `([a-z0-9_]+)` \|", markdown, flags=re.MULTILINE)


def test_the_doc_lists_every_quantity_key_once() -> None:
    keys = _keys(DOC.read_text(encoding="utf-8"))
    assert keys == list(QUANTITIES), "run '.venv/bin/metergw schema --write'"
    doc = DOC.read_text(encoding="utf-8")
    assert "| `voltage_l1_v` | V |  | voltage, phase 1 | `02010100` | `B611` |" in doc
    assert "| `energy_import_total_kwh` | kWh | yes |" in doc


def test_schema_quantities_prints_the_doc(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--quantities"]) == 0
    assert capsys.readouterr().out == DOC.read_text(encoding="utf-8")


def test_configuration_reference_links_the_quantity_list() -> None:
    assert "[quantities.md](quantities.md)" in (ROOT / "docs" / "configuration.md").read_text(
        encoding="utf-8"
    )
