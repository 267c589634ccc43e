"""``[validation]``: the plausibility checks every reading passes (VEE)."""

from __future__ import annotations

from pydantic import Field, field_validator

from gateway.config.base import Duration, Section
from protocols.quantities import QUANTITIES


class RangeConfig(Section):
    """Plausible bounds of a quantity; a value outside is flagged ``out_of_range``."""

    min: float
    max: float


def _default_ranges() -> dict[str, RangeConfig]:
    ranges = {"frequency_hz": RangeConfig(min=45.0, max=65.0)}
    for phase in (1, 2, 3):
        ranges[f"voltage_l{phase}_v"] = RangeConfig(min=0.0, max=500.0)
        ranges[f"power_factor_l{phase}"] = RangeConfig(min=-1.0, max=1.0)
    ranges["power_factor_total"] = RangeConfig(min=-1.0, max=1.0)
    return ranges


class ValidationConfig(Section):
    """Thresholds of the checks. Readings are flagged, never dropped."""

    max_power_kw: float = Field(default=1000.0, gt=0)
    """An energy register rising faster than this (kWh per hour) is a spike."""
    register_max_kwh: float = Field(default=999999.99, gt=0)
    """Where energy registers wrap (XXXXXX.XX kWh on DL/T 645 meters)."""
    rollover_margin: float = Field(default=0.05, gt=0, lt=1)
    """A drop from within this share of the top to near zero counts as a rollover."""
    max_clock_skew: Duration = 300.0
    """Meter- or concentrator-stamped readings further than this from the
    gateway clock are flagged ``clock_drift``."""
    ranges: dict[str, RangeConfig] = Field(default_factory=_default_ranges)
    """Per quantity key bounds (keys from the quantity registry)."""

    @field_validator("ranges")
    @classmethod
    def _known_keys(cls, ranges: dict[str, RangeConfig]) -> dict[str, RangeConfig]:
        for key, bounds in ranges.items():
            if key not in QUANTITIES:
                raise ValueError(f"unknown quantity key {key!r}")
            if bounds.min > bounds.max:
                raise ValueError(f"{key}: min is above max")
        return ranges
