"""The sink registry: one explicit table of every sink metergw knows, and building them.

An entry is a sink's config name (``[sinks.NAME]``, also its cursor's name), the
model its section is validated with, and the class whose ``from_config`` builds
it. The config layer validates ``[sinks]`` from this table, and check-config,
the reference docs and ``/status`` list sinks from it, so adding a sink is one
module (its model and its class) and one line below. :func:`register_sink` adds
one at run time (a plugin or a test) without editing this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from gateway.config.model import Config
from gateway.config.northbound import SinkSection
from gateway.forward.influx import InfluxSink, InfluxSinkConfig
from gateway.forward.local import LocalSink, LocalSinkConfig
from gateway.forward.mqtt import MqttSink, MqttSinkConfig
from gateway.forward.sink import Sink
from gateway.metrics import Metrics

S = TypeVar("S", bound=SinkSection)
S_contra = TypeVar("S_contra", bound=SinkSection, contravariant=True)


class SinkClass(Protocol[S_contra]):
    """A sink class, seen from the registry: built from its section by ``from_config``."""

    def from_config(self, section: S_contra, config: Config, metrics: Metrics) -> Sink:
        """The sink for ``section`` (``config`` for gateway-wide settings: name, state dir)."""
        ...


@dataclass(frozen=True, slots=True)
class SinkEntry(Generic[S]):
    """One sink metergw can forward to."""

    name: str
    """``[sinks.NAME]``; also the sink's cursor in the buffer and its ``sink`` metric label."""
    config: type[S]
    """The model ``[sinks.NAME]`` is validated with (a :class:`SinkSection`)."""
    sink: SinkClass[S]
    """The class whose ``from_config(section, config, metrics)`` builds the sink."""

    def build(self, config: Config, metrics: Metrics) -> Sink | None:
        """The sink of this entry's section, or None when it is absent or disabled."""
        section = config.sinks.section(self.name, self.config)
        if section is None or not section.enabled:
            return None
        sink = self.sink.from_config(section, config, metrics)
        if sink.name != self.name:  # the name is its cursor: another would replay everything
            raise ValueError(f"[sinks.{self.name}] built a sink named {sink.name!r}")
        return sink


SINKS: dict[str, SinkEntry[Any]] = {
    "influx": SinkEntry("influx", InfluxSinkConfig, InfluxSink),
    "mqtt": SinkEntry("mqtt", MqttSinkConfig, MqttSink),
    "local": SinkEntry("local", LocalSinkConfig, LocalSink),
}
"""``[sinks.NAME]`` -> its entry, in the order sinks are started and listed."""


def register_sink(entry: SinkEntry[S]) -> None:
    """Add a sink at run time; its ``[sinks.NAME]`` is accepted by configs validated after."""
    if entry.name in SINKS:
        raise ValueError(f"a sink named {entry.name!r} is registered already")
    SINKS[entry.name] = entry


def build_sinks(config: Config, metrics: Metrics) -> list[Sink]:
    """One sink per configured and enabled ``[sinks.*]`` section, in registry order."""
    out: list[Sink] = []
    for entry in SINKS.values():
        sink = entry.build(config, metrics)
        if sink is not None:
            out.append(sink)
    return out
