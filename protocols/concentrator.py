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
from typing import Annotated, Any, Final, Literal

import pydantic
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)

from protocols.quantities import QUANTITIES

READINGS_SCHEMA: Final = "metergw.readings/1"
STATUS_SCHEMA: Final = "metergw.status/1"
TOPIC_ROOT = "meters/v1"

MeterProtocol = Literal["dlt645-2007", "dlt645-1997", "modbus", "other"]

SEQ_MAX: Final = 2**63 - 1
"""``seq`` is a signed 64-bit integer on every store it reaches."""
VALUE_MAX: Final = Decimal("1e15")
"""A value's magnitude stays below this (the largest meter register has 12 digits)."""
VALUE_MIN_EXPONENT: Final = -12
"""... and, unless zero, at least 10^-12 in magnitude."""
VALUE_DIGITS: Final = 20
"""... with at most this many significant digits."""
VALUE_TEXT_MAX: Final = 40
"""A value written as a string is at most this long before it is read as a number."""


def _value_text(v: Any) -> Any:
    # Before any arithmetic: "9E+999999999999999999" is 21 bytes and a Decimal of it is
    # fine, but turning it into text or comparing it with a float allocates gigabytes.
    if isinstance(v, str) and len(v) > VALUE_TEXT_MAX:
        raise ValueError(f"value text longer than {VALUE_TEXT_MAX} characters")
    return v


def bounded_value(v: Decimal) -> Decimal:
    """``v`` if it is a plausible meter value: finite, zero or between
    10^:data:`VALUE_MIN_EXPONENT` and :data:`VALUE_MAX` in magnitude, at most
    :data:`VALUE_DIGITS` significant digits. Checked on the Decimal's parts, never by
    expanding it; trailing zeros are dropped where they would make the text long.
    Raises :class:`ValueError`."""
    if not v.is_finite():
        raise ValueError("value must be finite")
    if v.is_zero():
        return Decimal(0)  # "0E-999999999" would print as a billion zeros
    # adjusted() is the exponent of the leading digit: no arithmetic on the value itself.
    if v.adjusted() >= VALUE_MAX.adjusted():
        raise ValueError(f"value out of bounds (magnitude must be < {VALUE_MAX:.0e})")
    if v.adjusted() < VALUE_MIN_EXPONENT:
        raise ValueError(f"value out of bounds (magnitude must be >= 1e{VALUE_MIN_EXPONENT})")
    n = v.normalize()  # safe now: the exponent is small
    digits = n.as_tuple().digits
    if len(digits) > VALUE_DIGITS:
        raise ValueError(f"value has more than {VALUE_DIGITS} significant digits")
    # Trailing zeros beyond the bound ("1.000...0" from a long JSON number) are dropped.
    return v if len(v.as_tuple().digits) <= VALUE_DIGITS else n


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
        BeforeValidator(_value_text),
        Field(allow_inf_nan=False),
        AfterValidator(bounded_value),
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
    seq: Annotated[int, Field(ge=0, le=SEQ_MAX)]
    """Per-concentrator message counter: a jump is a network gap. Resends are recognised
    by their content, not by ``seq`` (see docs/concentrator-schema.md)."""
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
    """``meters/v1/conc-7/readings`` -> ``conc-7``; None for any other topic (a status
    topic, another root). An empty gw is returned as it is: the schema refuses it."""
    parts = topic.split("/")
    return parts[2] if len(parts) == 4 and readings_topic(parts[2]) == topic else None


def encode_readings(batch: ReadingsBatch) -> bytes:
    """Serialise a batch to the wire form (``schema`` key, JSON numbers)."""
    return batch.model_dump_json(by_alias=True, exclude_none=True).encode()


def encode_status(online: bool, ts: datetime | None = None) -> bytes:
    return (
        StatusMessage(schema=STATUS_SCHEMA, online=online, ts=ts)
        .model_dump_json(by_alias=True, exclude_none=True)
        .encode()
    )
