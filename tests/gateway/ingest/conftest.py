"""The ``paths`` fixture: counts the decoder's calls to the schema model."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.ingest import decode
from protocols.concentrator import ReadingsBatch, parse_readings
from tests.gateway.ingest.decoding import Paths


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Paths:
    seen = Paths()
    real: Callable[[bytes | str], ReadingsBatch] = parse_readings

    def counting(payload: bytes | str) -> ReadingsBatch:
        seen.model += 1
        return real(payload)

    monkeypatch.setattr(decode, "parse_readings", counting)
    return seen
