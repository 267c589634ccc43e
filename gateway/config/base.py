"""Shared pieces of the config models: strict sections and durations."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """``"15m"``, ``"500ms"``, ``"2h"``, ``10`` (seconds) -> seconds as float."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '15m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError(f"not a duration: {value!r} (use seconds or '500ms', '10s', '15m', '1h')")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds; written in TOML as a number of seconds or ``"15m"``-style strings."""


class Section(BaseModel):
    """A config section: unknown keys are errors, values are immutable."""

    # The input may hold secrets (a password substituted from ${VAR}, a URL with
    # credentials): a ValidationError names the key and the problem, never the value.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
