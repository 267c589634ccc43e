"""Forwarding: one cursor per sink, at-least-once delivery, identity-based dedup."""

from gateway.forward.forwarder import Forwarder
from gateway.forward.influx import InfluxSink, InfluxSinkConfig
from gateway.forward.local import LocalSink, LocalSinkConfig
from gateway.forward.mqtt import MqttSink, MqttSinkConfig
from gateway.forward.registry import SINKS, SinkEntry, build_sinks, register_sink
from gateway.forward.sink import Sink, SinkAuthError, SinkError, SinkUnavailable, WriteResult

__all__ = [
    "SINKS",
    "Forwarder",
    "InfluxSink",
    "InfluxSinkConfig",
    "LocalSink",
    "LocalSinkConfig",
    "MqttSink",
    "MqttSinkConfig",
    "Sink",
    "SinkAuthError",
    "SinkEntry",
    "SinkError",
    "SinkUnavailable",
    "WriteResult",
    "build_sinks",
    "register_sink",
]
