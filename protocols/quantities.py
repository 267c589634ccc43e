"""One registry of canonical quantity keys.

Every reading in metergw, whatever protocol it came from (DL/T 645 data
identifiers, Modbus profile entries, concentrator payloads), is named by one of
these keys. A key says its unit and whether the quantity is a cumulative
register (energy) that must never go backwards.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Quantity:
    """A canonical quantity: its key, unit, and whether it accumulates."""

    key: str
    unit: str
    cumulative: bool
    description: str


TARIFF_NAMES = ("sharp", "peak", "flat", "valley")
"""DL/T 645 tariffs 1..4, in the meters' own order."""


def _build() -> dict[str, Quantity]:
    q: dict[str, Quantity] = {}

    def add(key: str, unit: str, cumulative: bool, description: str) -> None:
        if key in q:  # pragma: no cover - guards the table itself
            raise ValueError(f"duplicate quantity key {key!r}")
        q[key] = Quantity(key, unit, cumulative, description)

    for direction, what in (
        ("combined", "combined active energy"),
        ("import", "import (forward) active energy"),
        ("export", "export (reverse) active energy"),
    ):
        add(f"energy_{direction}_total_kwh", "kWh", True, f"{what}, total")
        for n, name in enumerate(TARIFF_NAMES, start=1):
            add(f"energy_{direction}_t{n}_kwh", "kWh", True, f"{what}, tariff {n} ({name})")
    for direction, what in (("import", "import reactive"), ("export", "export reactive")):
        add(f"energy_reactive_{direction}_total_kvarh", "kvarh", True, f"{what} energy, total")
    for phase in (1, 2, 3):
        add(f"voltage_l{phase}_v", "V", False, f"voltage, phase {phase}")
        add(f"current_l{phase}_a", "A", False, f"current, phase {phase}")
        add(f"power_active_l{phase}_kw", "kW", False, f"active power, phase {phase}")
        add(f"power_reactive_l{phase}_kvar", "kvar", False, f"reactive power, phase {phase}")
        add(f"power_factor_l{phase}", "", False, f"power factor, phase {phase}")
    add("current_n_a", "A", False, "neutral current")
    add("power_active_total_kw", "kW", False, "active power, total")
    add("power_reactive_total_kvar", "kvar", False, "reactive power, total")
    add("power_apparent_total_kva", "kVA", False, "apparent power, total")
    add("power_factor_total", "", False, "power factor, total")
    add("frequency_hz", "Hz", False, "grid frequency")
    add("demand_active_import_max_kw", "kW", False, "maximum import active demand")
    add("meter_clock_drift_s", "s", False, "meter clock minus gateway clock")
    for n in range(1, 8):
        add(f"status_word_{n}", "", False, f"running status word {n}")
    # Derived by the gateway at each day's close in the meter's zone (gateway.analytics),
    # stamped at the day's start: a day's figures, not registers.
    add("daily_energy_import_total_kwh", "kWh", False, "import active energy of the day, total")
    for n, name in enumerate(TARIFF_NAMES, start=1):
        add(
            f"daily_energy_import_t{n}_kwh",
            "kWh",
            False,
            f"import active energy of the day, tariff {n} ({name})",
        )
    add("daily_max_demand_kw", "kW", False, "maximum 15-minute import demand of the day")
    add("daily_load_factor", "", False, "mean / maximum 15-minute demand of the day")
    add("daily_valley_share", "", False, "valley (tariff 4) share of the day's import energy")
    add("daily_completeness", "", False, "share of the day's 15-minute intervals present")
    return q


QUANTITIES: dict[str, Quantity] = _build()


class UnknownQuantityError(KeyError):
    """A key that is not in the registry."""


def quantity(key: str) -> Quantity:
    """Look up a canonical quantity; raise :class:`UnknownQuantityError` naming the key."""
    try:
        return QUANTITIES[key]
    except KeyError:
        raise UnknownQuantityError(f"unknown quantity key {key!r}") from None


def is_cumulative(key: str) -> bool:
    """True for registers that must never decrease (energy counters)."""
    q = QUANTITIES.get(key)
    return q is not None and q.cumulative
