"""How much of a bus's time probes of offline meters may take.

An offline meter's full poll backs off (doubling up to ``offline_backoff_max``) so
that a dead meter costs little; but a meter that returns must be noticed within
one poll interval of its group. So an offline meter is also *probed* at its
group's cadence: one request, no retries (a dead meter costs one timeout), and
when it answers it is polled at once. Probes draw on a token bucket that fills
at ``probe_share`` seconds per second of the bus's time: with many dead meters
on a line, they are probed in turn within that share and live meters keep the
rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SAVED_S = 60.0
"""Probe time saved up over at most this many seconds (a burst after a quiet spell)."""


@dataclass(slots=True)
class ProbeBudget:
    """A token bucket of bus seconds for probes; times are monotonic seconds."""

    share: float
    """Share of the bus's time probes may take (0 turns probing off)."""
    cost_s: float
    """What one probe costs at most (the bus's reply timeout)."""
    tokens: float = field(default=0.0)
    at: float | None = None

    @property
    def cap(self) -> float:
        return max(2 * self.cost_s, self.share * SAVED_S)

    def _refill(self, now: float) -> None:
        if self.at is None:
            self.tokens = self.cap
        else:
            self.tokens = min(self.cap, self.tokens + (now - self.at) * self.share)
        self.at = now

    def wait_s(self, now: float) -> float:
        """Seconds until a probe may be sent (0: now; ``inf`` when probing is off)."""
        if self.share <= 0:
            return math.inf
        self._refill(now)
        return max(0.0, (self.cost_s - self.tokens) / self.share)

    def spend(self, seconds: float, now: float) -> None:
        """A probe (or an offline retry) took ``seconds`` of the bus."""
        self._refill(now)
        self.tokens -= seconds
