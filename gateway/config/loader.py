"""Read a TOML file, substitute ``${VAR}`` from the environment, validate.

Every problem is collected and reported as ``FILE: section.key: message``;
nothing is opened or connected until the whole file is valid.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from gateway.config.model import Config
from gateway.config.southbound import southbound_problems

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file."""

    file: str
    location: str
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{self.file}: {where}{self.message}"


class ConfigError(Exception):
    """The config file cannot be used; ``problems`` says every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def format_location(loc: tuple[int | str, ...]) -> str:
    """``('buses', 0, 'serial', 'port')`` -> ``buses[0].serial.port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _substitute(
    value: Any, env: Mapping[str, str], loc: tuple[int | str, ...], missing: list[tuple[str, str]]
) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            missing.append((format_location(loc), name))
            return m.group(0)

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, env, (*loc, k), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, (*loc, i), missing) for i, v in enumerate(value)]
    return value


def parse_config(
    text: str, *, file: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate config text; raise :class:`ConfigError` listing every problem."""
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(file, "", f"not valid TOML: {exc}")]) from None
    missing: list[tuple[str, str]] = []
    data = _substitute(raw, env, (), missing)
    problems = [
        Problem(file, where, f"environment variable {name} is not set") for where, name in missing
    ]
    if problems:
        raise ConfigError(problems)
    base = Path(file).parent if file and not file.startswith("<") else Path.cwd()
    try:
        config = Config.model_validate(data, context={"base_dir": base})
    except pydantic.ValidationError as exc:
        problems = []
        for e in exc.errors(include_url=False):
            where = format_location(tuple(e["loc"]))
            for line in _message(e).splitlines():
                # Cross-reference checks on the whole file say "where: message".
                sub, sep, msg = line.partition(": ")
                if sep and not where and re.match(r"^[\w.\[\]-]+$", sub):
                    problems.append(Problem(file, sub, msg))
                else:
                    problems.append(Problem(file, where, line))
        raise ConfigError(problems) from None
    # What only the protocol tables can judge (DI maps, Modbus profiles); still no I/O
    # beyond reading profile files.
    late = southbound_problems(config.poll_groups, config.buses, profile_dirs_for(file))
    if late:
        raise ConfigError([Problem(file, *line.split(": ", 1)) for line in late])
    return config


SYSTEM_PROFILE_DIR = Path("/etc/metergw/profiles")
"""Where an operator puts profiles of their own for every config on the box."""


def profile_dirs_for(file: str) -> tuple[Path, ...]:
    """Where a Modbus profile named in ``file`` is looked for, in order.

    The config file's own ``profiles/``, then :data:`SYSTEM_PROFILE_DIR`;
    :func:`protocols.modbus_profile.resolve_profile` tries the packaged
    profiles last. A profile given as a path is relative to the config file.
    """
    if not file or file.startswith("<"):
        return (SYSTEM_PROFILE_DIR,)
    return (Path(file).resolve().parent / "profiles", SYSTEM_PROFILE_DIR)


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown key"
    return msg.removeprefix("Value error, ")


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raise :class:`ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(p), "", f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(p), "", f"not UTF-8 text: {exc}")]) from None
    return parse_config(text, file=str(p), env=env)
