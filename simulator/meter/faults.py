"""Faults a simulated device can be told to show, with optional expiry.

A fault is a name plus parameters, active until cleared or until its
duration (real seconds) has passed. Devices look their faults up lazily
when they are about to answer, so an expired fault costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

METER_FAULTS = frozenset(
    {
        "no_answer",
        "slow",
        "bad_checksum",
        "wrong_address",
        "garbage",
        "counter_reset",
        "spike",
        "clock_drift",
        "profile_stuck",
    }
)
"""What a meter (DL/T 645 or Modbus unit) can do wrong."""
BUS_FAULTS = frozenset({"dead"})
CONCENTRATOR_FAULTS = frozenset({"disconnect", "malformed"})


class UnknownFaultError(ValueError):
    """A fault name the target does not know."""


@dataclass(frozen=True, slots=True)
class ActiveFault:
    """One fault in force: its name, parameters and expiry (monotonic seconds)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    expires: float | None = None

    def remaining(self, now: float | None = None) -> float | None:
        """Real seconds left, or None for "until cleared"."""
        if self.expires is None:
            return None
        return max(0.0, self.expires - (time.monotonic() if now is None else now))


class FaultSet:
    """The faults currently set on one device."""

    __slots__ = ("_allowed", "_faults", "_owner")

    def __init__(self, allowed: Iterable[str], owner: str) -> None:
        self._allowed = frozenset(allowed)
        self._owner = owner
        self._faults: dict[str, ActiveFault] = {}

    def set(self, name: str, duration: float | None = None, **params: Any) -> ActiveFault:
        """Set (or replace) a fault; ``duration`` in real seconds, None = until cleared."""
        if name not in self._allowed:
            known = ", ".join(sorted(self._allowed))
            raise UnknownFaultError(f"{self._owner}: unknown fault {name!r} (known: {known})")
        if duration is not None and duration <= 0:
            raise ValueError(f"{self._owner}: fault {name!r} duration must be > 0")
        expires = None if duration is None else time.monotonic() + duration
        fault = ActiveFault(name, dict(params), expires)
        self._faults[name] = fault
        return fault

    def get(self, name: str) -> ActiveFault | None:
        """The fault if it is in force now (expired faults are dropped here)."""
        if not self._faults:
            return None
        fault = self._faults.get(name)
        if fault is not None and fault.expires is not None and time.monotonic() >= fault.expires:
            del self._faults[name]
            return None
        return fault

    def active(self) -> list[ActiveFault]:
        """Every fault in force now."""
        return [f for name in list(self._faults) if (f := self.get(name)) is not None]

    def clear(self, name: str | None = None) -> None:
        """Clear one fault, or all of them."""
        if name is None:
            self._faults.clear()
        else:
            self._faults.pop(name, None)

    def __bool__(self) -> bool:
        return bool(self._faults)
