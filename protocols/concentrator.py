"""Concentrator MQTT payloads: the documented JSON schema ``metergw.readings/1``.

Topics: ``meters/v1/{gateway}/readings`` (QoS 1, not retained) and
``meters/v1/{gateway}/status`` (retained, with a last will saying offline).

Both sides use these models: the gateway validates what it receives, the
simulator builds what it publishes. Values are parsed from JSON numbers
(IEEE doubles, ~15 significant digits, which is more than any meter register
carries) into ``Decimal`` via their shortest repr, so ``123456.78`` stays
exactly ``123456.78``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Final, Literal

import pydantic
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, field_validator

from protocols.quantities import QUANTITIES

READINGS_SCHEMA: Final = "metergw.readings/1"
STATUS_SCHEMA: Final = "metergw.status/1"
TOPIC_ROOT = "meters/v1"

MeterProtocol = Literal["dlt645-2007", "dlt645-1997", "modbus", "other"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class MeterRef(_Strict):
    """Which meter: its address, protocol and the concentrator port it hangs on."""

    addr: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_.:-]+$")]
    proto: MeterProtocol
    port: Annotated[str, Field(max_length=64)] | None = None


class Point(_Strict):
    """One value: data identifier (if any), canonical key, value, unit, quality."""

    id: Annotated[str, Field(max_length=16)] | None = None
    key: str
    v: Annotated[
        Decimal,
        Field(allow_inf_nan=False),
        PlainSerializer(float, return_type=float, when_used="json"),
    ]
    u: Annotated[str, Field(max_length=16)] = ""
    q: Annotated[int, Field(ge=0, le=255)] = 0
    """0 = good; anything else is the concentrator's own not-good flag."""

    @field_validator("key")
    @classmethod
    def _known_key(cls, key: str) -> str:
        if key not in QUANTITIES:
            raise ValueError(f"unknown quantity key {key!r}")
        return key


class MeterReadings(_Strict):
    """The points of one meter at one instant."""

    meter: MeterRef
    ts: AwareDatetime
    points: Annotated[list[Point], Field(min_length=1, max_length=512)]


class ReadingsBatch(_Strict):
    """One message on ``meters/v1/{gw}/readings``."""

    schema_: Literal["metergw.readings/1"] = Field(alias="schema")
    gw: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^/+#]+$")]
    seq: Annotated[int, Field(ge=0)]
    """Per-concentrator message counter: a jump is a network gap, a repeat a resend."""
    ts: AwareDatetime
    readings: Annotated[list[MeterReadings], Field(max_length=10_000)]


class StatusMessage(_Strict):
    """The retained message on ``meters/v1/{gw}/status`` (also the last will)."""

    schema_: Literal["metergw.status/1"] = Field(alias="schema")
    online: bool
    ts: AwareDatetime | None = None


class PayloadError(ValueError):
    """A payload that does not validate; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _reason(exc: pydantic.ValidationError) -> str:
    errs = exc.errors(include_url=False)
    first = errs[0]
    loc = ".".join(str(p) for p in first["loc"]) or "payload"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{loc}: {first['msg']}{more}"


def parse_readings(payload: bytes | str) -> ReadingsBatch:
    """Validate a readings message; raise :class:`PayloadError` with a one-line reason."""
    try:
        return ReadingsBatch.model_validate_json(payload)
    except pydantic.ValidationError as exc:
        raise PayloadError(_reason(exc)) from None


def parse_status(payload: bytes | str) -> StatusMessage:
    """Validate a status message; raise :class:`PayloadError`."""
    try:
        return StatusMessage.model_validate_json(payload)
    except pydantic.ValidationError as exc:
        raise PayloadError(_reason(exc)) from None


def readings_topic(gw: str) -> str:
    return f"{TOPIC_ROOT}/{gw}/readings"


def status_topic(gw: str) -> str:
    return f"{TOPIC_ROOT}/{gw}/status"


def gw_from_topic(topic: str) -> str | None:
    """``meters/v1/conc-7/readings`` -> ``conc-7``; None for other topics."""
    parts = topic.split("/")
    if len(parts) == 4 and f"{parts[0]}/{parts[1]}" == TOPIC_ROOT:
        return parts[2]
    return None


def encode_readings(batch: ReadingsBatch) -> bytes:
    """Serialise a batch to the wire form (``schema`` key, JSON numbers)."""
    return batch.model_dump_json(by_alias=True, exclude_none=True).encode()


def encode_status(online: bool, ts: datetime | None = None) -> bytes:
    return (
        StatusMessage(schema=STATUS_SCHEMA, online=online, ts=ts)
        .model_dump_json(by_alias=True, exclude_none=True)
        .encode()
    )
