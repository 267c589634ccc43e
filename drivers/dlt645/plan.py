"""Which data identifiers to read for a set of wanted quantity keys.

A block DI (``0001FF00``: total + tariffs, ``0201FF00``: three voltages) costs
one transaction instead of one per member, so a block is used wherever it
covers at least two wanted keys; the rest are read one DI each.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocols.dlt645 import REGISTRY, Variant


class UnmappedKeys(KeyError):
    """Quantity keys no data identifier of the variant carries."""

    def __init__(self, keys: list[str], variant: Variant) -> None:
        super().__init__(keys)
        self.keys = keys
        self.variant = variant

    def __str__(self) -> str:
        return f"no {self.variant} data identifier for {', '.join(self.keys)}"


def _indexes(variant: Variant) -> tuple[dict[str, int], dict[int, tuple[str, ...]]]:
    singles: dict[str, int] = {}
    blocks: dict[int, tuple[str, ...]] = {}
    for (v, di), item in REGISTRY.items():
        if v != variant:
            continue
        if item.kind in ("value", "status") and item.key is not None:
            singles[item.key] = di
    for (v, di), item in REGISTRY.items():
        if v == variant and item.kind == "block":
            keys = tuple(REGISTRY[(variant, m)].key or "" for m in item.members)
            blocks[di] = keys
    return singles, blocks


_CACHE: dict[Variant, tuple[dict[str, int], dict[int, tuple[str, ...]]]] = {}


def plan_dis(keys: Iterable[str], variant: Variant = Variant.V2007) -> list[int]:
    """The DIs to read for ``keys``: blocks covering >= 2 wanted keys, singles otherwise.

    Raises :class:`UnmappedKeys` listing every key the variant cannot read.
    """
    if variant not in _CACHE:
        _CACHE[variant] = _indexes(variant)
    singles, blocks = _CACHE[variant]
    wanted = list(dict.fromkeys(keys))
    missing = [k for k in wanted if k not in singles]
    if missing:
        raise UnmappedKeys(missing, variant)
    todo = set(wanted)
    chosen: list[int] = []
    while True:
        best, covered = 0, set[str]()
        for di, members in sorted(blocks.items()):
            c = todo.intersection(members)
            if len(c) > len(covered):
                best, covered = di, c
        if len(covered) < 2:
            break
        chosen.append(best)
        todo -= covered
    chosen.extend(singles[k] for k in wanted if k in todo)
    return chosen
