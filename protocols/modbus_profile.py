"""Modbus register-map profiles: one TOML file per meter model.

A profile says, for each canonical quantity a meter offers, where it lives
(function code 3 = holding or 4 = input registers, start address), how it is
encoded (data type, word order) and how the raw number becomes the quantity's
value (``value = raw * scale``, in the quantity's unit). The gateway reads
meters with it and the simulator serves meters from it, so both sides share one
encoder and one decoder.

File format (``config/profiles/NAME.toml``)::

    [profile]
    name = "sdm630"              # defaults to the file stem
    vendor = "Eastron"
    model = "SDM630"
    verified = true              # false: register map not checked line by line
    document = "Eastron SDM630 Modbus protocol, V2"   # the manufacturer's map it follows
    function = 4                 # defaults for every register below
    type = "float32"
    word_order = "big"

    [[registers]]
    key = "voltage_l1_v"         # canonical quantity key (protocols.quantities)
    address = 0x0000             # protocol address, 0-based
    # function, type, word_order: override the defaults
    scale = 1                    # value = raw * scale
    unit = "V"                   # optional; must be the quantity's unit

    [validation]                 # optional: this model's VEE thresholds over the
    max_power_kw = 60            # gateway's [validation] defaults (keys as there)

Types: int16, uint16, int32, uint32, int64, uint64, float32, float64.
Word order ``big`` sends the most significant 16-bit word first; ``little``
the least significant word first (bytes inside a word are always big-endian,
as Modbus demands). Integer types carry scaled values (``scale = 0.01`` for a
register in hundredths); 64-bit integers are what some meters use for energy
counters (Schneider iEM3000 INT64 Wh, ABB B2x UINT64 0.01 kWh).

Errors are :class:`ProfileError` naming the file and the key, e.g.
``config/profiles/x.toml: registers[3].type: unknown type 'float16'``.
"""

from __future__ import annotations

import enum
import importlib.resources
import itertools
import math
import struct
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from protocols.quantities import QUANTITIES


def _packaged_profile_dir() -> Path:
    # The wheel ships the repository's config/ as the data package metergw_data;
    # a source tree used without installing has it next to this package.
    try:
        data = importlib.resources.files("metergw_data")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "config" / "profiles"
    return Path(str(data / "profiles"))


BUILTIN_PROFILE_DIR: Final = _packaged_profile_dir()
"""The profiles that come with metergw (``config/profiles/`` in the repository)."""


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the key."""


class RegisterType(enum.StrEnum):
    """How a value is laid out in registers."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def size(self) -> int:
        """Number of 16-bit registers the type occupies."""
        return _LAYOUT[self][1]

    @property
    def is_float(self) -> bool:
        return self in (RegisterType.FLOAT32, RegisterType.FLOAT64)


_LAYOUT: Final[dict[RegisterType, tuple[str, int]]] = {
    RegisterType.INT16: ("h", 1),
    RegisterType.UINT16: ("H", 1),
    RegisterType.INT32: ("i", 2),
    RegisterType.UINT32: ("I", 2),
    RegisterType.INT64: ("q", 4),
    RegisterType.UINT64: ("Q", 4),
    RegisterType.FLOAT32: ("f", 2),
    RegisterType.FLOAT64: ("d", 4),
}


class WordOrder(enum.StrEnum):
    BIG = "big"
    LITTLE = "little"


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """Where and how one quantity is stored."""

    key: str
    address: int
    function: int
    type: RegisterType
    word_order: WordOrder
    scale: Decimal
    unit: str

    @property
    def count(self) -> int:
        """Number of registers the value occupies."""
        return self.type.size

    @property
    def end(self) -> int:
        """First address after the value."""
        return self.address + self.type.size


@dataclass(frozen=True, slots=True)
class ModbusProfile:
    """A meter model's register map."""

    name: str
    vendor: str
    model: str
    verified: bool
    description: str
    registers: tuple[RegisterSpec, ...]
    source: str
    """The file it was loaded from (for messages)."""
    document: str = ""
    """The manufacturer's document (title, version or date) the map follows."""
    validation: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """The ``[validation]`` table as written: thresholds the gateway checks and applies."""

    def by_key(self, key: str) -> RegisterSpec:
        """The register of a quantity; :class:`KeyError` naming the profile if absent."""
        for spec in self.registers:
            if spec.key == key:
                return spec
        raise KeyError(f"profile {self.name!r} ({self.source}) has no register for {key!r}")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(spec.key for spec in self.registers)


# --------------------------------------------------------------------------- values


def encode_value(spec: RegisterSpec, value: Decimal) -> list[int]:
    """Registers for ``value`` (in the quantity's unit) as the device sends them.

    Integer types round half-even to the nearest raw step and raise
    :class:`ValueError` naming the key when the raw value does not fit.
    """
    raw = value / spec.scale
    fmt, count = _LAYOUT[spec.type]
    if spec.type.is_float:
        data = struct.pack(f">{fmt}", float(raw))
    else:
        n = int(raw.to_integral_value())
        try:
            data = struct.pack(f">{fmt}", n)
        except struct.error:
            raise ValueError(
                f"{spec.key}: value {value} (raw {n}) does not fit {spec.type.value}"
            ) from None
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, 2 * count, 2)]
    if spec.word_order is WordOrder.LITTLE:
        words.reverse()
    return words


def decode_value(spec: RegisterSpec, registers: Sequence[int]) -> Decimal:
    """The value (in the quantity's unit) that ``registers`` encode.

    Floats decode to the shortest decimal that maps back to the same bits, so a
    float32 ``229.8`` is ``Decimal('229.8')``, not ``229.8000030517578``.
    Raises :class:`ValueError` for a wrong register count or a NaN/infinite
    float.
    """
    fmt, count = _LAYOUT[spec.type]
    if len(registers) != count:
        raise ValueError(f"{spec.key}: expected {count} registers, got {len(registers)}")
    words = list(registers)
    if spec.word_order is WordOrder.LITTLE:
        words.reverse()
    data = b"".join(int(w & 0xFFFF).to_bytes(2, "big") for w in words)
    (raw,) = struct.unpack(f">{fmt}", data)
    if spec.type.is_float:
        if not math.isfinite(raw):
            raise ValueError(f"{spec.key}: register value is {raw}")
        number = Decimal(_shortest_float(raw, fmt, data))
    else:
        number = Decimal(raw)
    return number * spec.scale if spec.scale != 1 else number


def _shortest_float(raw: float, fmt: str, data: bytes) -> str:
    if fmt == "d":
        return repr(raw)
    for digits in range(6, 10):
        text = f"{raw:.{digits}g}"
        if struct.pack(">f", float(text)) == data:
            return text
    return repr(raw)  # pragma: no cover - 9 digits always round-trip a float32


# --------------------------------------------------------------------------- loading


def parse_profile(text: str, source: str, default_name: str = "") -> ModbusProfile:
    """Parse and check a profile from TOML text; ``source`` names it in errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not valid TOML: {exc}") from None
    return _build(doc, source, default_name)


def load_profile(path: str | Path) -> ModbusProfile:
    """Load and check a profile file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{p}: cannot read profile: {exc.strerror or exc}") from None
    return parse_profile(text, str(p), default_name=p.stem)


def profile_search_path(search_dirs: Iterable[str | Path] = ()) -> list[Path]:
    """The caller's directories, then the packaged profiles."""
    dirs = [Path(d) for d in search_dirs]
    if BUILTIN_PROFILE_DIR not in dirs:
        dirs.append(BUILTIN_PROFILE_DIR)
    return dirs


def resolve_profile(name: str, search_dirs: Iterable[str | Path] = ()) -> ModbusProfile:
    """Find a profile by name (``NAME.toml`` in the search dirs) or by path.

    A value containing a path separator or ending in ``.toml`` is a path.
    Otherwise the caller's ``search_dirs`` are tried in order, then the
    profiles that come with metergw.
    """
    if "/" in name or name.endswith(".toml"):
        return load_profile(name)
    dirs = profile_search_path(search_dirs)
    for d in dirs:
        candidate = d / f"{name}.toml"
        if candidate.is_file():
            return load_profile(candidate)
    tried = ", ".join(str(d) for d in dirs)
    raise ProfileError(f"profile {name!r} not found (looked in: {tried})")


def _build(doc: Mapping[str, Any], source: str, default_name: str) -> ModbusProfile:
    unknown = set(doc) - {"profile", "registers", "validation"}
    if unknown:
        raise ProfileError(f"{source}: {sorted(unknown)[0]}: unknown section")
    head = doc.get("profile", {})
    if not isinstance(head, dict):
        raise ProfileError(f"{source}: profile: must be a table")
    allowed = {"name", "vendor", "model", "verified", "description", "function", "type"}
    allowed |= {"word_order", "document"}
    for k in head:
        if k not in allowed:
            raise ProfileError(f"{source}: profile.{k}: unknown key")
    name = _str(head, "name", source, "profile", default_name)
    if not name:
        raise ProfileError(f"{source}: profile.name: missing")
    verified = head.get("verified", True)
    if not isinstance(verified, bool):
        raise ProfileError(f"{source}: profile.verified: must be true or false")
    defaults = {k: head[k] for k in ("function", "type", "word_order") if k in head}
    regs_doc = doc.get("registers")
    if not isinstance(regs_doc, list) or not regs_doc:
        raise ProfileError(f"{source}: registers: at least one [[registers]] entry is needed")
    specs = tuple(
        _register(entry, defaults, source, f"registers[{i}]") for i, entry in enumerate(regs_doc)
    )
    _check_unique(specs, source)
    validation = doc.get("validation", {})
    if not isinstance(validation, dict):
        raise ProfileError(f"{source}: validation: must be a table")
    return ModbusProfile(
        name=name,
        vendor=_str(head, "vendor", source, "profile", ""),
        model=_str(head, "model", source, "profile", ""),
        verified=verified,
        description=_str(head, "description", source, "profile", ""),
        registers=specs,
        source=source,
        document=_str(head, "document", source, "profile", ""),
        validation=validation,
    )


def _str(table: Mapping[str, Any], key: str, source: str, where: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ProfileError(f"{source}: {where}.{key}: must be a string")
    return value


def _register(entry: Any, defaults: Mapping[str, Any], source: str, where: str) -> RegisterSpec:
    if not isinstance(entry, dict):
        raise ProfileError(f"{source}: {where}: must be a table")
    allowed = {"key", "address", "function", "type", "word_order", "scale", "unit"}
    for k in entry:
        if k not in allowed:
            raise ProfileError(f"{source}: {where}.{k}: unknown key")
    merged = {**defaults, **entry}

    def fail(key: str, msg: str) -> ProfileError:
        return ProfileError(f"{source}: {where}.{key}: {msg}")

    key = merged.get("key")
    if not isinstance(key, str):
        raise fail("key", "missing or not a string")
    if key not in QUANTITIES:
        raise fail("key", f"unknown quantity key {key!r}")
    address = merged.get("address")
    if not isinstance(address, int) or isinstance(address, bool) or not 0 <= address <= 0xFFFF:
        raise fail("address", "must be an integer 0..65535")
    function = merged.get("function")
    if function not in (3, 4):
        raise fail("function", f"must be 3 (holding) or 4 (input), got {function!r}")
    try:
        rtype = RegisterType(str(merged.get("type")))
    except ValueError:
        types = ", ".join(t.value for t in RegisterType)
        raise fail("type", f"unknown type {merged.get('type')!r} (one of {types})") from None
    try:
        order = WordOrder(merged.get("word_order", "big"))
    except ValueError:
        raise fail("word_order", "must be 'big' or 'little'") from None
    if address + rtype.size > 0x10000:
        raise fail("address", "value runs past register 65535")
    raw_scale = merged.get("scale", 1)
    if isinstance(raw_scale, bool) or not isinstance(raw_scale, int | float):
        raise fail("scale", "must be a number")
    try:
        scale = Decimal(str(raw_scale))
    except InvalidOperation:  # pragma: no cover - str of an int/float is a number
        raise fail("scale", "must be a number") from None
    if not scale.is_finite() or scale == 0:
        raise fail("scale", "must be a finite non-zero number")
    unit = merged.get("unit", QUANTITIES[key].unit)
    if unit != QUANTITIES[key].unit:
        raise fail("unit", f"{key} is in {QUANTITIES[key].unit!r}, not {unit!r} (use scale)")
    return RegisterSpec(key, address, int(function), rtype, order, scale, str(unit))


def _check_unique(specs: Sequence[RegisterSpec], source: str) -> None:
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if spec.key in seen:
            raise ProfileError(
                f"{source}: registers[{i}].key: {spec.key!r} already defined "
                f"in registers[{seen[spec.key]}]"
            )
        seen[spec.key] = i
    ordered = sorted(enumerate(specs), key=lambda p: (p[1].function, p[1].address))
    for (_, a), (j, b) in itertools.pairwise(ordered):
        if a.function == b.function and b.address < a.end:
            raise ProfileError(
                f"{source}: registers[{j}].address: {b.key} at {b.address} overlaps "
                f"{a.key} ({a.address}..{a.end - 1})"
            )
