"""What a DL/T 645 meter answers: requests in, reply bytes out (no I/O).

Framing, BCD and data identifiers are the codec's (:mod:`protocols.dlt645`);
this module only decides, per meter, which reply a request deserves:
values from the meter model, abnormal replies for unknown DIs or missing
records, follow-up frames for replies longer than one frame, and the
meter's faults (wrong address, corrupt checksum, garbage before the reply).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from protocols.dlt645 import (
    LOAD_FIELDS,
    LOAD_PROFILE_DI,
    REGISTRY,
    DataItem,
    ErrorFlags,
    LoadRecord,
    LocalProtocolError,
    ReadFollowup,
    ReadRequest,
    RemoteDataError,
    Request,
    Variant,
    WriteRequest,
    encode_address,
    encode_datetime,
    encode_load_profile,
    encode_payload,
    error_reply,
    parse_load_profile_request_extra,
    read_address_reply,
    read_reply,
    split_load_profile,
)
from simulator.meter.meter import LOAD_PROFILE_BLOCKS, SimMeter

MAX_DATA = 200
"""The largest DATA field of one frame (DI included)."""
_READ_FUNCTION = {Variant.V2007: 0x11, Variant.V1997: 0x01}
_FOLLOWUP_FUNCTION = {Variant.V2007: 0x12, Variant.V1997: 0x02}
_DI_LENGTH = {Variant.V2007: 4, Variant.V1997: 2}


@dataclass(slots=True)
class _Pending:
    """The rest of a long reply, served by read-follow-up requests."""

    di: int
    chunks: list[bytes] = field(default_factory=list)


class NoData(Exception):
    """The meter has nothing for this request: abnormal reply, "no data requested"."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What a meter puts on the line for one request, and after how much extra delay."""

    data: bytes
    delay: float = 0.0


class MeterResponder:
    """The protocol side of one meter on a bus of the given variant."""

    def __init__(self, meter: SimMeter, variant: Variant) -> None:
        self.meter = meter
        self.variant = variant
        self._pending: _Pending | None = None
        self._rng = random.Random(meter.seed ^ 0x645)

    # ------------------------------------------------------------------ values

    def _values_for(self, item: DataItem) -> list[Decimal]:
        meter = self.meter
        if item.kind in ("value", "status"):
            keys = [item.key]
        else:
            keys = [REGISTRY[(self.variant, m)].key for m in item.members]
        values = meter.values()
        out = []
        for key, di in zip(keys, item.members or (item.di,), strict=True):
            if key is None or key not in values:
                raise NoData
            # The model keeps the 2007 resolution; coarser formats (1997's whole
            # volts) get the value rounded as the meter would display it.
            step = Decimal(1).scaleb(-REGISTRY[(self.variant, di)].decimals)
            out.append(values[key].quantize(step, rounding=ROUND_HALF_EVEN))
        return out

    def payload(self, di: int, extra: bytes = b"") -> bytes:
        """The encoded payload of a read of ``di``; :class:`NoData` if there is none."""
        item = REGISTRY.get((self.variant, di))
        if item is None:
            raise NoData
        meter = self.meter
        kind = item.kind
        if kind in ("value", "status", "block"):
            values = self._values_for(item)
            payload = encode_payload(di, values, self.variant)
            meter.last_served[di] = values
            return payload
        if kind in ("date", "time", "datetime"):
            return encode_datetime(di, meter.meter_time(), self.variant)
        if kind == "address":
            return encode_address(meter.address)
        if kind in ("freeze_time", "freeze_energy"):
            hourly = (di >> 16) & 0xFF == 0x04
            record = meter.freeze(di & 0xFF, hourly=hourly)
            if record is None:
                raise NoData
            at, energies = record
            if kind == "freeze_time":
                return encode_datetime(di, at, self.variant)
            keys = [REGISTRY[(self.variant, m)].key for m in item.members]
            values = [energies[k] for k in keys if k is not None]
            meter.last_served[di] = values
            return encode_payload(di, values, self.variant)
        if kind == "load_profile":
            if not meter.keeps_load_profile:
                raise NoData
            try:
                count, start = parse_load_profile_request_extra(extra)
            except RemoteDataError:
                raise NoData from None
            # A field of a recorded block the meter does not measure (phases 2 and 3 of
            # a single-phase meter) is missing from its values: sent as FFH.
            records = [
                LoadRecord(
                    at,
                    {k: v for k, v in values.items() if k in LOAD_FIELDS},
                    LOAD_PROFILE_BLOCKS,
                )
                for at, values in meter.load_profile(start, count)
            ]
            if not records:
                raise NoData
            return encode_load_profile(records)
        raise NoData

    # ----------------------------------------------------------------- replies

    def reply_address(self) -> str:
        """The address the meter puts in its replies (the wrong one under that fault)."""
        wrong = self.meter.fault("wrong_address")
        if wrong is None:
            return self.meter.address
        other = str(wrong.params.get("address", ""))
        if not other:
            last = (int(self.meter.address[-1]) + 1) % 10 if self.meter.address[-1].isdigit() else 1
            other = self.meter.address[:-1] + str(last)
        return other

    def _chunks(self, di: int, payload: bytes) -> list[bytes]:
        first = MAX_DATA - _DI_LENGTH[self.variant]
        later = first - (1 if self.variant is Variant.V2007 else 0)
        if di == LOAD_PROFILE_DI and self.variant is Variant.V2007:
            return _whole_records(payload, first, later)
        chunks = [payload[:first]]
        rest = payload[first:]
        while rest:
            chunks.append(rest[:later])
            rest = rest[later:]
        return chunks

    def reply(self, request: Request, function: int) -> bytes:
        """The reply frame to ``request`` (whose function code was ``function``)."""
        address = self.reply_address()
        variant = self.variant
        if isinstance(request, ReadRequest):
            self._pending = None
            try:
                payload = self.payload(request.di, request.extra)
            except (NoData, LocalProtocolError):
                return error_reply(address, function, ErrorFlags.NO_DATA, variant)
            chunks = self._chunks(request.di, payload)
            if len(chunks) > 1:
                self._pending = _Pending(request.di, chunks[1:])
            return read_reply(address, request.di, chunks[0], variant, follow_up=len(chunks) > 1)
        if isinstance(request, ReadFollowup):
            pending = self._pending
            if pending is None or pending.di != request.di or not pending.chunks:
                return error_reply(address, function, ErrorFlags.NO_DATA, variant)
            chunk = pending.chunks.pop(0)
            more = bool(pending.chunks)
            if not more:
                self._pending = None
            seq = request.seq if variant is Variant.V2007 else None
            return read_reply(address, request.di, chunk, variant, follow_up=more, seq=seq)
        if isinstance(request, WriteRequest):
            return error_reply(address, function, ErrorFlags.UNAUTHORISED, variant)
        return error_reply(address, function, ErrorFlags.OTHER, variant)

    def address_reply(self) -> bytes:
        return read_address_reply(self.reply_address())

    def on_the_line(self, frame: bytes) -> Answer:
        """Apply the line faults (checksum, garbage, slowness) to a reply frame."""
        meter = self.meter
        data = frame
        delay = 0.0
        if meter.faults:
            if meter.fault("bad_checksum") is not None:
                corrupt = bytearray(data)
                corrupt[-2] ^= 0x5A
                data = bytes(corrupt)
            garbage = meter.fault("garbage")
            if garbage is not None:
                length = int(garbage.params.get("length", 8))
                # No 0x68 start byte or 0xFE wake-up byte: the garbage must not
                # be mistaken for the start of a frame.
                noise = bytes(self._rng.choice(_NOISE) for _ in range(length))
                data = noise if garbage.params.get("only", False) else noise + data
            slow = meter.fault("slow")
            if slow is not None:
                delay = float(slow.params.get("delay", 1.0))
        return Answer(data, delay)

    def set_clock(self, when: datetime) -> None:
        self.meter.set_clock(when)


def _whole_records(payload: bytes, first: int, later: int) -> list[bytes]:
    """Load-profile records packed into frames of ``first`` then ``later`` bytes, none
    split across two frames (as meters send them)."""
    chunks = [b""]
    for record in split_load_profile(payload):
        room = first if len(chunks) == 1 else later
        if chunks[-1] and len(chunks[-1]) + len(record) > room:
            chunks.append(b"")
        chunks[-1] += record
    return chunks


_NOISE = bytes(b for b in range(256) if b not in (0x68, 0xFE, 0x16))
