"""The installed metergw version, for ``metergw --version``."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
"""In a source checkout, the project file next to the packages."""


def version() -> str:
    """The package metadata's version, else the source checkout's, else ``0+unknown``."""
    try:
        return importlib.metadata.version("metergw")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        doc = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
        return str(doc["project"]["version"])
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        return "0+unknown"
