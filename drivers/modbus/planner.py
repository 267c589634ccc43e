"""Merge neighbouring register reads into as few requests as possible.

As Telegraf's modbus input does: registers of the same function code whose
distance is at most ``max_gap`` registers are read in one request, as long
as the request stays within ``max_registers``. The skipped registers cost a
little wire time; each saved request saves a whole turnaround.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_REGISTERS = 125
"""Modbus limit for one read of holding/input registers (FC 03/04)."""
MAX_BITS = 2000
"""Modbus limit for one read of coils/discrete inputs (FC 01/02)."""


@dataclass(frozen=True, slots=True)
class RegisterSpan:
    """The registers one value occupies."""

    key: str
    function: int
    address: int
    count: int

    @property
    def end(self) -> int:
        """One past the last register."""
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request and the values it carries."""

    function: int
    address: int
    count: int
    spans: tuple[RegisterSpan, ...]

    def registers_of(self, span: RegisterSpan, registers: list[int]) -> list[int]:
        """The slice of this block's ``registers`` that holds ``span``."""
        start = span.address - self.address
        return registers[start : start + span.count]


def plan_reads(
    spans: Iterable[RegisterSpan], *, max_gap: int = 10, max_registers: int = MAX_REGISTERS
) -> list[ReadBlock]:
    """Group ``spans`` into read blocks, fewest first; ordered by function and address.

    A span longer than ``max_registers`` gets a block of its own (a value is
    never split between requests).
    """
    if max_gap < 0 or max_registers < 1:
        raise ValueError("max_gap must be >= 0 and max_registers >= 1")
    blocks: list[ReadBlock] = []
    ordered = sorted(set(spans), key=lambda s: (s.function, s.address, s.count, s.key))
    current: list[RegisterSpan] = []
    start = end = 0
    for span in ordered:
        limit = min(max_registers, MAX_BITS if span.function in (1, 2) else MAX_REGISTERS)
        if (
            current
            and span.function == current[0].function
            and span.address - end <= max_gap
            and max(end, span.end) - start <= limit
        ):
            current.append(span)
            end = max(end, span.end)
            continue
        if current:
            blocks.append(ReadBlock(current[0].function, start, end - start, tuple(current)))
        current, start, end = [span], span.address, span.end
    if current:
        blocks.append(ReadBlock(current[0].function, start, end - start, tuple(current)))
    return blocks
