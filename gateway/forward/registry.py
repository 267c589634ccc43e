"""Config name -> sink class, in one explicit table, and building the configured sinks."""

from __future__ import annotations

from gateway.config.model import Config
from gateway.forward.influx import InfluxSink
from gateway.forward.local import LocalSink
from gateway.forward.mqtt import MqttSink
from gateway.forward.sink import Sink
from gateway.metrics import Metrics

SINKS: dict[str, type[InfluxSink] | type[MqttSink] | type[LocalSink]] = {
    "influx": InfluxSink,
    "mqtt": MqttSink,
    "local": LocalSink,
}
"""``[sinks.NAME]`` -> the class whose ``from_config`` builds it; NAME is also its cursor."""


def build_sinks(config: Config, metrics: Metrics) -> list[Sink]:
    """One sink per configured ``[sinks.*]`` section (a disabled local sink is left out)."""
    out: list[Sink] = []
    for cls in SINKS.values():
        sink = cls.from_config(config, metrics)
        if sink is not None:
            out.append(sink)
    return out
