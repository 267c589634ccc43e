"""A sink written the way a plugin is: its config model and its class, in one file.

Nothing in ``gateway/`` names it: a test registers it at run time with
``register_sink(SinkEntry("toy", ToySinkConfig, ToySink))`` and configures it
with a ``[sinks.toy]`` table. It keeps what it is given in memory, so that a
test can see exactly which rows the forwarder delivered.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field

from gateway.buffer import Batch
from gateway.config.base import Duration
from gateway.config.model import Config
from gateway.config.northbound import SinkSection
from gateway.forward import WriteResult
from gateway.metrics import Metrics


class ToySinkConfig(SinkSection):
    """``[sinks.toy]``: rows kept in memory, for tests."""

    label: str = Field(min_length=1)
    """Said back by the sink, to show the section's values reach it."""
    batch_size: int = Field(default=50, gt=0)
    flush_interval: Duration = 0.02


class ToySink:
    """Remembers every reading's ``(seq, meter, key, value)`` it was handed."""

    def __init__(self, config: ToySinkConfig, gateway: str) -> None:
        self.name = "toy"
        self.batch_size = config.batch_size
        self.flush_interval = config.flush_interval
        self.label = f"{gateway}/{config.label}"
        self.rows: list[tuple[int, str, str, str]] = []
        self.closed = False

    @classmethod
    def from_config(cls, section: ToySinkConfig, config: Config, metrics: Metrics) -> Self:
        return cls(section, config.gateway.name)

    async def write(self, batch: Batch) -> WriteResult:
        self.rows += [(r[0], r[1], r[2], r[3]) for r in batch.readings]
        return WriteResult(len(batch))

    async def close(self) -> None:
        self.closed = True
