"""Concentrator ingest: MQTT subscription, payload validation, PUBACK after commit."""

from gateway.ingest.decode import Decoded, decode_message
from gateway.ingest.subscriber import ConcentratorIngest

__all__ = ["ConcentratorIngest", "Decoded", "decode_message"]
