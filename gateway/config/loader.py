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

from gateway.config.capacity import schedule_warnings
from gateway.config.checks import config_warnings, reference_problems
from gateway.config.model import Config
from gateway.config.schema_errors import format_location, validate_all
from gateway.config.southbound import southbound_problems

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file."""

    file: str
    location: str
    message: str
    warning: bool = False
    """Not an error: the file runs, but probably not as meant."""

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        prefix = "warning: " if self.warning else ""
        return f"{prefix}{self.file}: {where}{self.message}"


class ConfigError(Exception):
    """The config file cannot be used; ``problems`` says every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


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


@dataclass(frozen=True, slots=True)
class CheckedConfig:
    """Everything :func:`check_config` found in one pass over a file."""

    config: Config | None
    """The config when it has no problems."""
    problems: list[Problem]
    warnings: list[Problem]


def check_config(
    text: str, *, file: str = "<config>", env: Mapping[str, str] | None = None
) -> CheckedConfig:
    """Every problem and warning of config text, in one pass (see
    :mod:`gateway.config.schema_errors`); nothing is opened but profile files."""
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return CheckedConfig(None, [Problem(file, "", f"not valid TOML: {exc}")], [])
    missing: list[tuple[str, str]] = []
    data = _substitute(raw, env, (), missing)
    problems = [
        Problem(file, where, f"environment variable {name} is not set") for where, name in missing
    ]
    unset = {where for where, _ in missing}
    base = Path(file).resolve().parent if file and not file.startswith("<") else Path.cwd()
    result = validate_all(data, {"base_dir": base})
    # A value still holding ${NAME} is already reported as unset.
    problems += [Problem(file, where, msg) for where, msg in result.errors if where not in unset]
    config = result.config
    late = reference_problems(config, result.dropped_groups)
    # What only the protocol tables can judge (DI maps, Modbus profiles).
    for line in southbound_problems(config.poll_groups, config.buses, profile_dirs_for(file)):
        where, _, msg = line.partition(": ")
        late.append((where, msg))
    problems += [Problem(file, result.original(where), msg) for where, msg in late]
    problems.sort(key=lambda p: _file_order(p.location, list(raw)))
    findings = config_warnings(config)
    if not problems:  # the estimate needs every meter's plan
        findings += schedule_warnings(config.buses, config.poll_groups, profile_dirs_for(file))
    warnings = []
    for where, msg in findings:
        where = result.original(where)
        if where in ("", "sinks") and problems:
            continue  # a source or sink set aside for its errors is not missing
        warnings.append(Problem(file, where, msg, warning=True))
    return CheckedConfig(None if problems else config, problems, warnings)


def _file_order(location: str, sections: list[str]) -> tuple[int, int, int]:
    """Sort key: problems in the order of the file's sections, buses and meters
    (``sort`` is stable, so one part's problems keep their order)."""
    m = re.match(r"^([\w-]+)(?:\[(\d+)\])?(?:\.meters\[(\d+)\])?", location)
    if m is None:
        return (-1, 0, 0)
    head = m.group(1)
    rank = sections.index(head) if head in sections else len(sections)
    return (rank, int(m.group(2) or 0), int(m.group(3) or 0))


def parse_config(
    text: str, *, file: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate config text; raise :class:`ConfigError` listing every problem."""
    checked = check_config(text, file=file, env=env)
    if checked.config is None:
        raise ConfigError(checked.problems)
    return checked.config


def check_config_file(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> CheckedConfig:
    """:func:`check_config` on a file; a file that cannot be read is one problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        return CheckedConfig(None, [Problem(str(p), "", f"cannot read: {exc.strerror or exc}")], [])
    except UnicodeDecodeError as exc:
        return CheckedConfig(None, [Problem(str(p), "", f"not UTF-8 text: {exc}")], [])
    return check_config(text, file=str(p), env=env)


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


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raise :class:`ConfigError`."""
    checked = check_config_file(path, env)
    if checked.config is None:
        raise ConfigError(checked.problems)
    return checked.config
