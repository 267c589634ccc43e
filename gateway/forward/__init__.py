"""Forwarding: one cursor per sink, at-least-once delivery, identity-based dedup."""

from gateway.forward.forwarder import Forwarder
from gateway.forward.influx import InfluxSink
from gateway.forward.local import LocalSink
from gateway.forward.mqtt import MqttSink
from gateway.forward.registry import SINKS, build_sinks
from gateway.forward.sink import Sink, SinkAuthError, SinkError, SinkUnavailable, WriteResult

__all__ = [
    "SINKS",
    "Forwarder",
    "InfluxSink",
    "LocalSink",
    "MqttSink",
    "Sink",
    "SinkAuthError",
    "SinkError",
    "SinkUnavailable",
    "WriteResult",
    "build_sinks",
]
