"""Runs every captured-style case in ``cases/*.toml`` (see ``cases/README.md``)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.decode import describe_event, parse_hex
from protocols.dlt645 import Decoder, Discarded, Frame, Variant

CASES = sorted((Path(__file__).parent / "cases").glob("*.toml"))


def _matches(expected: Any, actual: Any, where: str) -> None:
    """``expected`` must be a subset of ``actual``: dicts by key, lists item by item."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected a table, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}.{key}: missing in {actual!r}"
            _matches(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), (
            f"{where}: {len(actual)} items, expected {len(expected)}"
        )
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _matches(e, a, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def _events(data: bytes, bytewise: bool) -> list[Frame | Discarded]:
    decoder = Decoder()
    events: list[Frame | Discarded] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.flush()


def test_there_are_cases() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: Path, bytewise: bool) -> None:
    case = tomllib.loads(path.read_text())
    variant = Variant(case.get("variant", "dlt645-2007"))
    events = _events(parse_hex([case["input"]]), bytewise)
    described = [describe_event(e, variant) for e in events]
    expected = case["events"]
    assert len(described) == len(expected), f"{path.name}: got {described}"
    for i, (want, got) in enumerate(zip(expected, described, strict=True)):
        assert "error" not in got, f"{path.name}: event {i}: {got['error']}"
        _matches(want, got, f"{path.name}: event {i}")
