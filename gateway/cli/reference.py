"""The config reference, generated from the pydantic models.

``config/schema.json`` (JSON Schema, for editors: taplo and Even Better TOML
read it) and ``docs/configuration.md`` (the reference page) are both derived
from :class:`gateway.config.Config` and the attribute docstrings of its
sections, so they cannot drift from what the daemon accepts.
"""

from __future__ import annotations

import ast
import collections.abc
import inspect
import itertools
import json
import re
import socket
import textwrap
import types
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

SCHEMA_PATH = "config/schema.json"
DOCS_PATH = "docs/configuration.md"
QUANTITIES_PATH = "docs/quantities.md"
_DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"


# Attribute docstrings -------------------------------------------------------


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The string literal under each annotated attribute of ``cls`` (PEP 257 style)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def _doc(model: type[BaseModel], name: str) -> str:
    for cls in model.__mro__:
        if name in field_docs(cls):
            return field_docs(cls)[name]
    info = model.model_fields.get(name)  # a model built at run time has no source
    return info.description or "" if info is not None else ""


def _is_duration(info: FieldInfo) -> bool:
    from gateway.config.base import parse_duration

    return any(getattr(m, "func", None) is parse_duration for m in info.metadata)


def _models(root: type[BaseModel]) -> Iterator[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    todo = [root]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        yield model
        for info in model.model_fields.values():
            todo.extend(m for n in _nested(info.annotation) for m in _members(n))


def _nested(annotation: Any) -> list[type[BaseModel]]:
    from gateway.config.northbound import SinksConfig

    if isinstance(annotation, type) and issubclass(annotation, SinksConfig):
        return [annotation.as_fields()]  # the registered sinks, one field each
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _nested(a)]


def _members(model: type[BaseModel]) -> list[type[BaseModel]]:
    """The models a field of type ``model`` is validated as: for ``[[buses]]``, each
    registered protocol's bus model (the union told apart by ``protocol``)."""
    from gateway.config.southbound import BusConfig
    from gateway.southbound.registry import plugins

    if model is BusConfig:
        return [p.bus_model for p in plugins()]
    return [model]


# JSON Schema -----------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """``Config.model_json_schema()`` with field docs and durations filled in."""
    from gateway.config import Config

    schema = Config.model_json_schema()
    defs = schema.get("$defs", {})
    for model in _models(Config):
        target = schema if model is Config else defs.get(model.__name__)
        if target is None:
            continue
        props = target.get("properties", {})
        for name, info in model.model_fields.items():
            prop = props.get(info.alias or name)
            if prop is None:
                continue
            doc = _doc(model, name)
            if doc and "description" not in prop:
                prop["description"] = doc
            if _is_duration(info):
                keep = {k: v for k, v in prop.items() if k in ("title", "default", "description")}
                prop.clear()
                prop["anyOf"] = [
                    {"type": "number", "minimum": 0},
                    {"type": "string", "pattern": _DURATION_PATTERN},
                ]
                prop.update(keep)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "metergw configuration"
    return schema


def schema_text() -> str:
    """The schema file's exact contents."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# Markdown reference ----------------------------------------------------------


def _type_name(annotation: Any, info: FieldInfo | None = None) -> str:
    if info is not None and _is_duration(info):
        return "duration"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " \\| ".join(_type_name(a) for a in inner)
    if origin in (list, collections.abc.Sequence):
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"table of {_type_name(args[1])}"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if annotation is SecretStr:
        return "secret string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        annotation, str(annotation)
    )


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        if info.default_factory is socket.gethostname:
            return "the host name"
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "see below"
    else:
        value = info.default
    if value is PydanticUndefined:
        return ""
    if value is None:
        return "unset"
    if isinstance(value, dict) and value and isinstance(next(iter(value.values())), BaseModel):
        return "see text"
    if isinstance(value, dict | list):
        return f"`{json.dumps(value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def _markdown(text: str) -> str:
    """reStructuredText literals (double backticks) as Markdown code."""
    return text.replace("``", "`")


def _cell(text: str) -> str:
    return _markdown(" ".join(text.split())).replace("|", "\\|")


def _heading(path: str, many: bool, keyed: bool) -> str:
    if many:
        return f"[[{path}]]"
    if keyed:
        return f"[{path}.NAME]"
    return f"[{path}]"


def _own_fields(model: type[BaseModel]) -> set[str] | None:
    """The fields a protocol's bus or meter model declares itself (the rest are the shared
    ones, documented once); ``None`` for any other model (all its fields)."""
    from gateway.config.southbound import BusConfig, MeterConfig

    for base in (BusConfig, MeterConfig):
        if issubclass(model, base) and model is not base:
            return set(inspect.get_annotations(model))
    return None


def _section(
    model: type[BaseModel], path: str, many: bool, keyed: bool, title: str = ""
) -> list[str]:
    lines = [f"## `{_heading(path, many, keyed)}`{title}", ""]
    doc = _markdown(re.sub(r"^``\[[^\]]*\]+``: ", "", inspect.cleandoc(model.__doc__ or "")))
    if doc:
        doc = doc[0].upper() + doc[1:]
        lines += [doc, ""]
    rows: list[tuple[str, str, str, str]] = []
    children: list[list[str]] = []
    own = _own_fields(model)
    for name, info in model.model_fields.items():
        if own is not None and name not in own:
            continue
        key = info.alias or name
        rows.append(
            (f"`{key}`", _type_name(info.annotation, info), _default(info), _doc(model, name))
        )
        for child in _nested(info.annotation):
            origin = typing.get_origin(info.annotation)
            child_many = origin in (list, collections.abc.Sequence)
            child_keyed = origin is dict
            children.append(
                _section(child, f"{path}.{key}" if path else key, child_many, child_keyed, title)
            )
    if rows:
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| {k} | {t} | {d} | {_cell(m)} |" for k, t, d, m in rows]
        lines.append("")
    for block in children:
        lines += block
    return lines


_INTRO = """\
# Configuration reference

<!-- Generated from the config models by `metergw schema --write`; edit the
models' docstrings, not this file. A test fails when it is out of date. -->

metergw reads one TOML file (`metergw run -c FILE`). Check a file without
starting anything with `metergw check-config FILE`: every problem in the file
is printed at once, one line each as `FILE: section.key: message`, and the exit
status is 2. Lines starting `warning:` (a meter in no poll group, a file with
no source of readings or no sink) do not fail the check. Editors that read JSON
Schema for TOML (taplo, Even Better TOML) can validate as you type with
[`config/schema.json`](../config/schema.json).

- **Unknown keys are errors**, so a typo never silently falls back to a default.
- **Environment variables**: `${NAME}` is replaced by the variable's value, and
  `${NAME:-default}` falls back to `default`; an unset variable without a
  default is an error naming the key. Keep secrets (tokens, passwords) out of
  the file this way; they are never logged.
- **Durations** are a number of seconds or a string with a unit: `"500ms"`,
  `"10s"`, `"15m"`, `"2h"`, `"1d"`.
- **Paths** (`gateway.state_dir`, `buffer.path`, `sinks.local.path`, a serial
  `port`, a Modbus `profile` given as a path, any other file) are relative to the
  folder of the config file, not to the directory metergw was started from.
- **Quantity keys** are listed in [quantities.md](quantities.md); a misspelt
  key or quantity gets a "did you mean" from `metergw check-config`.
- **Times** are stored in UTC; meter clocks are converted with
  `gateway.timezone` or the meter's own `timezone`.
- Examples: [`config/demo.toml`](../config/demo.toml) (what `make demo` runs).
"""


def reference_markdown() -> str:
    """The whole ``docs/configuration.md``."""
    from gateway.config import Config

    lines = [_INTRO]
    for name, info in Config.model_fields.items():
        for model in _nested(info.annotation):
            origin = typing.get_origin(info.annotation)
            lines += _section(model, name, origin is list, origin is dict)
            if name == "buses":
                lines += _protocol_sections()
    return "\n".join(lines).rstrip() + "\n"


def _protocol_sections() -> list[str]:
    """What each protocol's bus and meters add to the shared keys, from the registry."""
    from gateway.southbound.registry import plugins

    lines: list[str] = []
    for plugin in plugins():
        names = " or ".join(f'"{n}"' for n in plugin.names)
        lines += _section(plugin.bus_model, "buses", True, False, f" with `protocol = {names}`")
    return lines


_QUANTITIES_INTRO = """\
# Quantity keys

<!-- Generated from protocols/quantities.py by `metergw schema --write`; a test
fails when it is out of date. -->

Every reading is named by one of these keys, whatever protocol it came from.
Use them in `[poll_groups.NAME] quantities`, `[validation.ranges]`, Modbus
profiles and concentrator payloads; `metergw check-config` rejects any other
key and suggests the closest one. *Cumulative* quantities are registers that
never go backwards (checked for spikes and rollovers). The DL/T 645 columns give
the data identifier a poll reads for the key alone (several keys of one block,
such as the tariffs or the three voltages, are read together with the block's
`...FF..` identifier); "-" means the variant has none (metergw computes
`meter_clock_drift_s` from the meter's clock).
"""


def quantities_markdown() -> str:
    """The whole ``docs/quantities.md``: one row per key of the quantity registry."""
    from drivers.dlt645.plan import UnmappedKeys, plan_dis
    from protocols.dlt645 import Variant, format_di
    from protocols.quantities import QUANTITIES

    def di(key: str, variant: Variant) -> str:
        try:
            return " ".join(f"`{format_di(d, variant)}`" for d in plan_dis([key], variant))
        except UnmappedKeys:
            return "-"

    lines = [
        _QUANTITIES_INTRO,
        "| key | unit | cumulative | meaning | DL/T 645-2007 | DL/T 645-1997 |",
        "|---|---|---|---|---|---|",
    ]
    for q in QUANTITIES.values():
        lines.append(
            f"| `{q.key}` | {q.unit or '-'} | {'yes' if q.cumulative else ''} | "
            f"{_cell(q.description)} | {di(q.key, Variant.V2007)} | {di(q.key, Variant.V1997)} |"
        )
    return "\n".join(lines) + "\n"


def outputs(root: Path) -> dict[Path, str]:
    """Each generated file under ``root`` and what it must contain."""
    return {
        root / SCHEMA_PATH: schema_text(),
        root / DOCS_PATH: reference_markdown(),
        root / QUANTITIES_PATH: quantities_markdown(),
    }
