"""Every schema error of a config in one pass, and a valid config from the rest.

pydantic stops at a section whose fields fail: its own cross-field checks, and
every check of the whole file after it, never run. So a file with a typo in
one meter would be reported in rounds. Here each failing part (a meter, a bus,
a poll group, a sink, a section) is set aside and the rest validated again,
until what is left is valid. The errors keep the locations of the original
file, and the checks that need a valid config (references, quantities) run on
what is left.
"""

from __future__ import annotations

import collections.abc
import copy
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic
from pydantic import BaseModel

from gateway.config.base import did_you_mean
from gateway.config.model import Config
from gateway.config.northbound import SinksConfig
from protocols.quantities import QUANTITIES

Loc = tuple[int | str, ...]

_MAX_ROUNDS = 50
"""Each round sets aside at least one part; a file never has this many levels of them."""
_BUS_MEMBER = re.compile(r"^buses\[(\d+)\](?:\.meters\[(\d+)\])?")


def format_location(loc: Loc) -> str:
    """``('buses', 0, 'serial', 'port')`` -> ``buses[0].serial.port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Validated:
    """The outcome of :func:`validate_all`."""

    config: Config
    """The file's config with every failing part set aside (the whole file when valid)."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    """``(location, message)`` of each schema error, in the original file's terms."""
    dropped_groups: set[str] = field(default_factory=set)
    """Poll groups set aside: they exist, so naming one is not a second error."""
    bus_map: list[int] = field(default_factory=list)
    meter_maps: dict[int, list[int]] = field(default_factory=dict)

    def original(self, where: str) -> str:
        """A location in :attr:`config` (``buses[0].meters[1]...``) as in the file."""
        m = _BUS_MEMBER.match(where)
        if m is None:
            return where
        b = self.bus_map[int(m.group(1))]
        out = f"buses[{b}]"
        if m.group(2) is not None:
            out += f".meters[{self.meter_maps[b][int(m.group(2))]}]"
        return out + where[m.end() :]


class _Parts:
    """The raw file with failing parts set aside; list indexes map back to the file."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data: dict[str, Any] = copy.deepcopy(dict(data))
        self.dropped_buses: set[int] = set()
        self.dropped_meters: set[tuple[int, int]] = set()
        self.dropped_groups: set[str] = set()
        self.bus_map: list[int] = []
        self.meter_maps: dict[int, list[int]] = {}

    def view(self) -> dict[str, Any]:
        """What is left, as data to validate; sets the index maps."""
        view = dict(self.data)
        self.bus_map, self.meter_maps = [], {}
        buses = self.data.get("buses")
        if not isinstance(buses, list):
            return view
        kept_buses = []
        for b, bus in enumerate(buses):
            if b in self.dropped_buses:
                continue
            self.bus_map.append(b)
            meters = bus.get("meters") if isinstance(bus, dict) else None
            if isinstance(meters, list):
                kept = [m for m in range(len(meters)) if (b, m) not in self.dropped_meters]
                self.meter_maps[b] = kept
                bus = {**bus, "meters": [meters[m] for m in kept]}
            kept_buses.append(bus)
        view["buses"] = kept_buses
        return view

    def original(self, loc: Loc) -> Loc:
        """An error location in the last :meth:`view` as a location in the file."""
        if len(loc) < 2 or loc[0] != "buses" or not isinstance(loc[1], int):
            return loc
        b = self.bus_map[loc[1]]
        meter = len(loc) >= 4 and loc[2] == "meters" and isinstance(loc[3], int)
        if meter and b in self.meter_maps:
            assert isinstance(loc[3], int)
            return ("buses", b, "meters", self.meter_maps[b][loc[3]], *loc[4:])
        return ("buses", b, *loc[2:])

    def drop(self, loc: Loc) -> bool:
        """Set aside the smallest part holding the error at ``loc``; False if none is left."""
        if not loc:
            return False
        head = loc[0]
        if head == "buses" and len(loc) >= 2 and isinstance(loc[1], int):
            b = loc[1]
            m = loc[3] if len(loc) >= 4 and loc[2] == "meters" else None
            if isinstance(m, int):
                # A meter with two errors (a missing key and an unknown one) is set aside
                # once; its second error must not take its whole bus with it.
                self.dropped_meters.add((b, m))
                return True
            if b in self.dropped_buses:
                return False
            self.dropped_buses.add(b)
            return True
        if head == "poll_groups" and len(loc) >= 2 and self._keep_known_quantities(str(loc[1])):
            return True
        if head in ("poll_groups", "sinks") and len(loc) >= 2:
            section = self.data.get(str(head))
            if isinstance(section, dict):
                if loc[1] not in section:
                    return False  # already set aside for another of its errors
                del section[loc[1]]
                if head == "poll_groups":
                    self.dropped_groups.add(str(loc[1]))
                return True
        if str(head) in self.data:
            del self.data[str(head)]
            return True
        return False

    def _keep_known_quantities(self, name: str) -> bool:
        """Drop a poll group's unknown quantity keys, so that its meters are still
        checked for the known ones; False if there were none to drop."""
        groups = self.data.get("poll_groups")
        group = groups.get(name) if isinstance(groups, dict) else None
        if not isinstance(group, dict) or not isinstance(keys := group.get("quantities"), list):
            return False
        known = [k for k in keys if isinstance(k, str) and k in QUANTITIES]
        if not known or len(known) == len(keys):
            return False
        group["quantities"] = known
        return True


def validate_all(data: Mapping[str, Any], context: Mapping[str, Any]) -> Validated:
    """Validate ``data`` as a :class:`Config`, collecting every schema error."""
    parts = _Parts(data)
    errors: list[tuple[str, str]] = []
    for _ in range(_MAX_ROUNDS):
        view = parts.view()
        try:
            config = Config.model_validate(view, context=dict(context))
        except pydantic.ValidationError as exc:
            progress = False
            for err in exc.errors(include_url=False):
                loc = parts.original(tuple(err["loc"]))
                where = format_location(loc)
                errors += [(where, line) for line in _message(err, loc, data).splitlines()]
                progress |= parts.drop(loc)
            if not progress:
                break
            continue
        return Validated(config, errors, parts.dropped_groups, parts.bus_map, parts.meter_maps)
    return Validated(Config(), errors, parts.dropped_groups)


def _message(err: Mapping[str, Any], loc: Loc, data: Any) -> str:
    if err["type"] == "extra_forbidden":
        hint = did_you_mean(str(loc[-1]), _keys_at(loc[:-1], data)) if loc else ""
        return "unknown key" + (f"; {hint}" if hint else "")
    return str(err["msg"]).removeprefix("Value error, ")


def _keys_at(loc: Loc, data: Any) -> list[str]:
    """The keys the table at ``loc`` of ``data`` accepts (for "did you mean"); a bus's
    are its protocol's (its plugin's bus model)."""
    annotation: Any = Config
    for part in loc:
        annotation = _step(_unwrap(annotation), part)
        if annotation is None:
            return []
        data = data.get(part) if isinstance(data, dict) else _item(data, part)
        annotation = _protocol_model(_unwrap(annotation), data)
    model = _unwrap(annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _item(data: Any, part: int | str) -> Any:
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return data[part]
    return None


def _protocol_model(annotation: Any, data: Any) -> Any:
    """A bus's model as its ``protocol`` says (the union's member), else ``annotation``."""
    from gateway.config.southbound import BusConfig
    from gateway.southbound.registry import plugin_for, protocol_names

    if isinstance(annotation, type) and issubclass(annotation, BusConfig):
        protocol = data.get("protocol") if isinstance(data, dict) else None
        if protocol in protocol_names():
            return plugin_for(str(protocol)).bus_model
    return annotation


def _unwrap(annotation: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` -> ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                return annotation
            annotation = inner[0]
        else:
            return annotation


def _step(annotation: Any, part: int | str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, collections.abc.Sequence) and isinstance(part, int):
        return args[0]
    if origin is dict and isinstance(part, str):
        return args[1]
    if isinstance(annotation, type) and issubclass(annotation, SinksConfig):
        return annotation.sections().get(str(part))  # a registry's tables, not fields
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(str(part))
        return None if info is None else info.annotation
    return None
