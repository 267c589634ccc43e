"""Shared pieces of the config models: strict sections and durations."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo

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


def resolve_path(value: str, info: ValidationInfo) -> str:
    """A relative path taken against the config file's folder (``base_dir`` in the
    validation context); absolute paths, and paths validated without a context, as given."""
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    if base is None or not value or Path(value).is_absolute():
        return value
    return os.path.normpath(Path(base) / value)  # base is resolved: ".." is safe to fold


ConfigPath = Annotated[str, AfterValidator(resolve_path)]
"""A file or folder path; relative ones are relative to the config file, not the
working directory (``metergw run`` from any folder, or a systemd unit, reads the same)."""


def _resolve_profile_path(value: str, info: ValidationInfo) -> str:
    # Same rule as protocols.modbus_profile.resolve_profile: a slash or ".toml" is a path.
    return resolve_path(value, info) if "/" in value or value.endswith(".toml") else value


ProfileRef = Annotated[str, AfterValidator(_resolve_profile_path)]
"""A Modbus profile: a name (``sdm630``) as given, or a path, taken like a :data:`ConfigPath`."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"did you mean 'interval'?"`` naming the choice closest to a misspelt word,
    or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""
