"""Frozen records and load-profile records (DL/T 645-2007).

Frozen records
    ``0x050600NN`` is the time (``YYMMDDhhmm``) of the NN-th last daily freeze,
    ``0x050601NN`` the import active energy stored then (total + tariffs 1-4,
    4 bytes each). Hourly freezes use ``0x050400NN`` (time) and ``0x050401NN``
    (import active energy total, 4 bytes). NN counts from 1 (the latest):
    1-62 daily, 1-254 hourly. Their values decode with ``decode_payload`` and
    ``decode_datetime`` like any other DI.

Load profile (layout to be verified against a real meter)
    Our notes describe the standard's load-profile record only loosely, so this
    module implements one documented, self-consistent layout, used by both the
    gateway and the simulator. It must be checked against a real meter's
    capture before it is relied on for billing.

    Request: DI ``06000001`` ("records from a given time"), followed by the
    extra bytes ``NN mm hh DD MM YY``: the record count NN (1 byte BCD, 1-99)
    then the start time, BCD, minute first (see
    :func:`load_profile_request_extra`).

    Reply payload (after the DI): the records back to back, each
    ``LOAD_RECORD_SIZE`` = 12 bytes:

    ========  =====  ==============================================
    offset    bytes  field
    ========  =====  ==============================================
    0         5      record start time ``YYMMDDhhmm``, sent ``mm hh DD MM YY``
    5         4      import active energy total, ``XXXXXX.XX`` kWh (as DI 00010000)
    9         3      active power total, ``XX.XXXX`` kW, signed (as DI 02030000)
    ========  =====  ==============================================

    A 200-byte reply (the standard's limit for one frame) holds 16 records.
    The fields after the time are the table ``LOAD_PROFILE_FIELDS``: change it
    there, in one place, if a real meter shows a different layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from protocols.dlt645.bcd import decode_number, encode_number, int_to_bcd
from protocols.dlt645.codes import Variant
from protocols.dlt645.dates import LAYOUTS, decode_clock, encode_clock
from protocols.dlt645.errors import LocalProtocolError, RemoteDataError
from protocols.dlt645.registry import MAX_DAILY_FREEZES, MAX_HOURLY_FREEZES, DataItem, lookup

LOAD_PROFILE_DI: Final = 0x06000001
"""Load-profile records from a given time (request extra: count + start time)."""
LOAD_PROFILE_FIELDS: Final = (0x00010000, 0x02030000)
"""The DIs whose values follow the start time in each record, in order."""
MAX_LOAD_RECORDS: Final = 99

_FIELD_ITEMS: Final[tuple[DataItem, ...]] = tuple(
    lookup(di, Variant.V2007) for di in LOAD_PROFILE_FIELDS
)
_TIME: Final = LAYOUTS["freeze_time"]
LOAD_RECORD_SIZE: Final = len(_TIME) + sum(item.length for item in _FIELD_ITEMS)
LOAD_PROFILE_KEYS: Final = tuple(item.key or "" for item in _FIELD_ITEMS)
"""The quantity keys every load record carries."""


@dataclass(frozen=True, slots=True)
class LoadRecord:
    """One load-profile record: its start (naive meter-local time) and its values."""

    start: datetime
    values: Mapping[str, Decimal]


def freeze_time_di(n: int, hourly: bool = False) -> int:
    """DI of the time of the ``n``-th last daily (or hourly) freeze."""
    return (0x05040000 if hourly else 0x05060000) + _freeze_index(n, hourly)


def freeze_energy_di(n: int, hourly: bool = False) -> int:
    """DI of the import active energy of the ``n``-th last daily (or hourly) freeze."""
    return (0x05040100 if hourly else 0x05060100) + _freeze_index(n, hourly)


def _freeze_index(n: int, hourly: bool) -> int:
    top = MAX_HOURLY_FREEZES if hourly else MAX_DAILY_FREEZES
    if not 1 <= n <= top:
        kind = "hourly" if hourly else "daily"
        raise LocalProtocolError(f"{kind} freeze number {n} is not in 1..{top}")
    return n


def load_profile_request_extra(count: int, start: datetime) -> bytes:
    """Extra request bytes for DI ``06000001``: count NN (BCD) then ``mm hh DD MM YY``."""
    if not 1 <= count <= MAX_LOAD_RECORDS:
        raise LocalProtocolError(f"load-profile record count {count} is not in 1..99")
    try:
        return int_to_bcd(count, 1) + encode_clock(start, _TIME)
    except ValueError as exc:
        raise LocalProtocolError(f"load-profile start: {exc}") from None


def parse_load_profile_request_extra(extra: bytes) -> tuple[int, datetime]:
    """The count and start time of a load-profile request (meter side)."""
    if len(extra) != 1 + len(_TIME):
        raise RemoteDataError(
            f"load-profile request extra of {len(extra)} bytes, expected {1 + len(_TIME)}"
        )
    try:
        count = int(extra[:1][::-1].hex())
        return count, decode_clock(extra[1:], _TIME)
    except ValueError as exc:
        raise RemoteDataError(f"load-profile request: {exc}") from None


def encode_load_profile(records: Sequence[LoadRecord]) -> bytes:
    """Payload of a load-profile reply (see the module docstring for the layout).

    Every record must carry exactly the keys of ``LOAD_PROFILE_KEYS``; raises
    :class:`LocalProtocolError` naming the record otherwise, or when a value
    does not fit its format.
    """
    out = bytearray()
    for index, record in enumerate(records):
        if set(record.values) != set(LOAD_PROFILE_KEYS):
            raise LocalProtocolError(
                f"load record {index} ({record.start:%Y-%m-%d %H:%M}) has keys "
                f"{sorted(record.values)}, expected {list(LOAD_PROFILE_KEYS)}"
            )
        try:
            out += encode_clock(record.start, _TIME)
            for item in _FIELD_ITEMS:
                value = Decimal(record.values[item.key or ""])
                out += encode_number(value, item.length, item.digits, item.decimals, item.signed)
        except ValueError as exc:
            raise LocalProtocolError(f"load record {index}: {exc}") from None
    return bytes(out)


def decode_load_profile(payload: bytes) -> list[LoadRecord]:
    """The records of a load-profile reply payload.

    Raises :class:`RemoteDataError` when the payload is not a whole number of
    records, or a field is not BCD or not a valid time.
    """
    if len(payload) % LOAD_RECORD_SIZE:
        raise RemoteDataError(
            f"load-profile payload of {len(payload)} bytes is not a whole number of "
            f"{LOAD_RECORD_SIZE}-byte records"
        )
    records = []
    time_size = len(_TIME)
    for index in range(0, len(payload), LOAD_RECORD_SIZE):
        raw = payload[index : index + LOAD_RECORD_SIZE]
        try:
            start = decode_clock(raw[:time_size], _TIME)
            values: dict[str, Decimal] = {}
            offset = time_size
            for item in _FIELD_ITEMS:
                field = raw[offset : offset + item.length]
                values[item.key or ""] = decode_number(field, item.decimals, item.signed)
                offset += item.length
        except ValueError as exc:
            number = index // LOAD_RECORD_SIZE
            raise RemoteDataError(f"load-profile record {number}: {exc}") from None
        records.append(LoadRecord(start, values))
    return records
