"""The sink interface: built from its config section, writes a batch, says which
points were refused for good.

A sink raises :class:`SinkUnavailable` for anything worth retrying (no
connection, 5xx, 429) and :class:`SinkAuthError` when it is refused
credentials; it returns a :class:`WriteResult` naming the sequences it
rejected permanently (they are quarantined, and the cursor moves past them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Self

from gateway.buffer import Batch

if TYPE_CHECKING:
    from gateway.config.model import Config
    from gateway.metrics import Metrics


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What the sink confirmed: ``accepted`` points; ``rejected_seqs`` maps seq -> reason."""

    accepted: int
    rejected_seqs: Mapping[int, str] = field(default_factory=dict)


class SinkError(Exception):
    """A write that did not happen (nothing is lost: the cursor stays)."""


class SinkUnavailable(SinkError):
    """Transient: retry later, after ``retry_after`` seconds if the sink said so."""

    def __init__(self, message: str, retry_after: float | None = None, kind: str = "unavailable"):
        super().__init__(message)
        self.retry_after = retry_after
        self.kind = kind


class SinkAuthError(SinkError):
    """The sink refused our credentials (401/403): alarm, keep the data, retry slowly."""


class Sink(Protocol):
    """A destination with its own cursor in the buffer.

    A sink's module holds its config model (a ``SinkSection``) and its class; the
    registry (:mod:`gateway.forward.registry`) names the pair.
    """

    name: str
    """Config name (``influx``, ``mqtt``, ``local``): also the cursor's name."""
    batch_size: int
    """Most readings handed to one ``write``."""
    flush_interval: float
    """Longest a reading waits for a fuller batch, seconds."""

    @classmethod
    def from_config(cls, section: Any, config: Config, metrics: Metrics) -> Self:
        """The sink of its validated ``[sinks.NAME]`` ``section`` (of the model the registry
        names); ``config`` gives gateway-wide settings (its name, the state directory)."""
        ...

    async def write(self, batch: Batch) -> WriteResult:
        """Write every row of ``batch``; return once the sink confirmed them."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
