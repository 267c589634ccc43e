"""``metergw --version``."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib

import pytest

from gateway.cli import version as version_module

PYPROJECT = tomllib.loads(version_module.PYPROJECT.read_text(encoding="utf-8"))


def test_version_prints_the_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "--version"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert out.stdout == f"metergw {importlib.metadata.version('metergw')}\n"
    assert out.stdout == f"metergw {PYPROJECT['project']['version']}\n"


def test_version_falls_back_to_the_source_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert version_module.version() == PYPROJECT["project"]["version"]
    monkeypatch.setattr(version_module, "PYPROJECT", version_module.PYPROJECT.with_name("none"))
    assert version_module.version() == "0+unknown"
