"""``[validation]``: the plausibility checks every reading passes (VEE).

The ``[validation]`` section holds the defaults. A Modbus profile's own
``[validation]`` table, and a meter's ``[buses.meters.validation]`` table,
override them key by key (:class:`ValidationOverride`): the meter's over the
profile's over the global section. ``ranges`` merge per quantity key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError, field_validator

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


def _check_ranges(ranges: dict[str, RangeConfig]) -> dict[str, RangeConfig]:
    for key, bounds in ranges.items():
        if key not in QUANTITIES:
            raise ValueError(f"unknown quantity key {key!r}")
        if bounds.min > bounds.max:
            raise ValueError(f"{key}: min is above max")
    return ranges


class ValidationConfig(Section):
    """Thresholds of the checks. Readings are flagged, never dropped.

    These are the defaults. A Modbus profile's own ``[validation]`` table and a
    meter's ``[buses.meters.validation]`` table (same keys) override them key by
    key, the meter's over the profile's; ``ranges`` merge per quantity key. The
    flags and what triggers each are listed in the README ("Quality flags").
    """

    max_power_kw: float = Field(default=1000.0, gt=0)
    """An energy register rising faster than this (kWh per hour) is a spike."""
    register_max_kwh: float = Field(default=999999.99, gt=0)
    """Where energy registers wrap (XXXXXX.XX kWh on DL/T 645 meters)."""
    rollover_margin: float = Field(default=0.05, gt=0, lt=1)
    """A drop from within this share of the top to near zero counts as a rollover."""
    max_clock_skew: Duration = 300.0
    """Live concentrator readings stamped further than this from the gateway clock
    are flagged ``clock_drift`` (records and backfilled readings are not checked;
    polled meters' clocks are checked by ``clock_drift_max`` of their bus)."""
    tariff_sum_tolerance: int = Field(default=1, ge=0)
    """How many steps of the registers' last digit the sum of the tariff registers
    may differ from the total before all of them are flagged ``tariff_mismatch``."""
    ranges: dict[str, RangeConfig] = Field(default_factory=_default_ranges)
    """Per quantity key bounds (keys from the quantity registry)."""

    @field_validator("ranges")
    @classmethod
    def _known_keys(cls, ranges: dict[str, RangeConfig]) -> dict[str, RangeConfig]:
        return _check_ranges(ranges)

    def merged(self, *overrides: ValidationOverride | None) -> ValidationConfig:
        """These thresholds with ``overrides`` applied in order (the last one wins)."""
        data = self.model_dump()
        for over in overrides:
            if over is None:
                continue
            for name, value in over.model_dump(exclude_none=True).items():
                if name == "ranges":
                    data["ranges"] = {**data["ranges"], **value}
                else:
                    data[name] = value
        return ValidationConfig.model_validate(data)


class ValidationOverride(Section):
    """Thresholds of one meter (or, as a profile file's ``[validation]`` table, of one
    Modbus meter model); keys left out keep the profile's or ``[validation]``'s."""

    max_power_kw: float | None = Field(default=None, gt=0)
    """As ``validation.max_power_kw``, for this meter: e.g. its breaker's rating."""
    register_max_kwh: float | None = Field(default=None, gt=0)
    """As ``validation.register_max_kwh``: where this meter's registers wrap."""
    rollover_margin: float | None = Field(default=None, gt=0, lt=1)
    """As ``validation.rollover_margin``."""
    max_clock_skew: Duration | None = None
    """As ``validation.max_clock_skew``."""
    tariff_sum_tolerance: int | None = Field(default=None, ge=0)
    """As ``validation.tariff_sum_tolerance``: 3 for a meter that truncates each register."""
    ranges: dict[str, RangeConfig] | None = None
    """Bounds per quantity key, merged over the default ranges key by key."""

    @field_validator("ranges")
    @classmethod
    def _known_keys(cls, ranges: dict[str, RangeConfig] | None) -> dict[str, RangeConfig] | None:
        return None if ranges is None else _check_ranges(ranges)


def profile_override(table: Mapping[str, Any], source: str) -> ValidationOverride:
    """A profile's ``[validation]`` table; :class:`ValueError` naming the file and key."""
    try:
        return ValidationOverride.model_validate(dict(table))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ValueError(f"{source}: validation.{where}: {msg}") from None
