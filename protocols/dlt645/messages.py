"""Requests and replies: build them as bytes, parse decoded frames into typed messages.

The master (gateway driver) builds requests and parses replies; the meter side
(simulator) parses requests and builds replies. Builders raise
:class:`LocalProtocolError`; parsers raise :class:`RemoteDataError` when a
frame's data does not fit its function code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from protocols.dlt645.bcd import BROADCAST_ADDRESS, WILDCARD_ADDRESS
from protocols.dlt645.codes import (
    ABNORMAL_BIT,
    DI_LENGTH,
    DIRECTION_BIT,
    FOLLOW_UP_BIT,
    FUNCTION_MASK,
    ErrorFlags,
    Function1997,
    Function2007,
    Variant,
    flag_names,
    function_name,
    variant_of_function,
)
from protocols.dlt645.dates import LAYOUTS, decode_clock, encode_clock
from protocols.dlt645.errors import LocalProtocolError, RemoteDataError
from protocols.dlt645.frame import Frame, encode_frame
from protocols.dlt645.registry import format_di
from protocols.dlt645.values import decode_address, encode_address

_READ: Final = {Variant.V2007: Function2007.READ_DATA, Variant.V1997: Function1997.READ_DATA}
_FOLLOWUP: Final = {
    Variant.V2007: Function2007.READ_FOLLOWUP,
    Variant.V1997: Function1997.READ_FOLLOWUP,
}
_WRITE: Final = {Variant.V2007: Function2007.WRITE_DATA, Variant.V1997: Function1997.WRITE_DATA}
_PASSWORD_LENGTH: Final = 4
_V2007: Final = Variant.V2007
_READ_2007: Final = int(Function2007.READ_DATA)
_READ_1997: Final = int(Function1997.READ_DATA)
_OPERATOR_LENGTH: Final = 4


# Requests (what a master sends) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read data: the DI and any extra request bytes (e.g. load-profile count and start)."""

    di: int
    extra: bytes = b""


@dataclass(frozen=True, slots=True)
class ReadFollowup:
    """Read the follow-up frame ``seq`` of a DI (DL/T 645-1997 sends no ``seq``: 0)."""

    di: int
    seq: int


@dataclass(frozen=True, slots=True)
class ReadAddress:
    """Read the communication address (sent to the wildcard address)."""


@dataclass(frozen=True, slots=True)
class BroadcastTime:
    """Set every meter's clock (naive meter-local time); meters do not reply."""

    when: datetime


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """Write data: DI, new data, and the password and operator code sent with it."""

    di: int
    data: bytes
    password: bytes = b""
    operator: bytes = b""


@dataclass(frozen=True, slots=True)
class OtherRequest:
    """Any other function code, with its raw data (offset removed)."""

    function: int
    data: bytes


Request = ReadRequest | ReadFollowup | ReadAddress | BroadcastTime | WriteRequest | OtherRequest


# Replies (what a meter sends) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataReply:
    """A normal read reply: DI, payload bytes, whether follow-up frames exist, and the
    sequence number of a follow-up reply (``None`` for a direct reply)."""

    di: int
    payload: bytes
    has_follow_up: bool
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An abnormal reply: the error flags the meter set, and the function it refused."""

    flags: ErrorFlags
    function: int = 0

    @property
    def names(self) -> list[str]:
        """The names of the flags set (``["NO_DATA"]``)."""
        return flag_names(self.flags)


@dataclass(frozen=True, slots=True)
class AddressReply:
    """The reply to a read-address request."""

    address: str


@dataclass(frozen=True, slots=True)
class OtherReply:
    """Any other normal reply (e.g. a write acknowledgement), with its raw data."""

    function: int
    data: bytes


Reply = DataReply | ErrorReply | AddressReply | OtherReply

# Hot path: set the slots directly rather than through the frozen __init__
# (see protocols.dlt645.frame._frame for why).
_new = object.__new__
_set_di = DataReply.__dict__["di"].__set__
_set_payload = DataReply.__dict__["payload"].__set__
_set_follow_up = DataReply.__dict__["has_follow_up"].__set__
_set_seq = DataReply.__dict__["seq"].__set__


def _data_reply(di: int, payload: bytes, has_follow_up: bool) -> DataReply:
    reply: DataReply = _new(DataReply)
    _set_di(reply, di)
    _set_payload(reply, payload)
    _set_follow_up(reply, has_follow_up)
    _set_seq(reply, None)
    return reply


def _di_bytes(di: int, variant: Variant) -> bytes:
    length = DI_LENGTH[variant]
    if not 0 <= di < 1 << (8 * length):
        raise LocalProtocolError(f"data identifier {di:#x} does not fit {length} bytes ({variant})")
    return di.to_bytes(length, "little")


def _byte(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFF:
        raise LocalProtocolError(f"{what} {value} is not in 0..255")
    return bytes((value,))


# Builders ---------------------------------------------------------------------------


def read_request(
    address: str, di: int, variant: Variant = Variant.V2007, *, extra: bytes = b""
) -> bytes:
    """Read data ``di`` from a meter (1997 DIs are 2-byte ints such as ``0x9010``)."""
    return encode_frame(address, _READ[variant], _di_bytes(di, variant) + extra)


def read_followup_request(
    address: str, di: int, seq: int, variant: Variant = Variant.V2007
) -> bytes:
    """Read follow-up frame ``seq`` of ``di`` (2007 sends the sequence byte; 1997 has none)."""
    data = _di_bytes(di, variant)
    if variant is Variant.V2007:
        data += _byte(seq, "follow-up sequence number")
    return encode_frame(address, _FOLLOWUP[variant], data)


def read_address_request() -> bytes:
    """Ask the (single) meter on the line for its address (2007, wildcard address)."""
    return encode_frame(WILDCARD_ADDRESS, Function2007.READ_ADDRESS, b"")


def broadcast_time_request(when: datetime) -> bytes:
    """Set every meter's clock to ``when`` (naive meter-local time; no reply)."""
    try:
        data = encode_clock(when, LAYOUTS["broadcast"])
    except ValueError as exc:
        raise LocalProtocolError(f"broadcast time: {exc}") from None
    return encode_frame(BROADCAST_ADDRESS, Function2007.BROADCAST_TIME, data)


def write_request(
    address: str,
    di: int,
    data: bytes,
    variant: Variant = Variant.V2007,
    *,
    password: bytes = bytes(_PASSWORD_LENGTH),
    operator: bytes = bytes(_OPERATOR_LENGTH),
) -> bytes:
    """Write ``data`` to ``di`` with a 4-byte password (level + 3 bytes) and, for 2007,
    a 4-byte operator code."""
    if len(password) != _PASSWORD_LENGTH:
        raise LocalProtocolError(f"password must be {_PASSWORD_LENGTH} bytes, got {len(password)}")
    head = _di_bytes(di, variant) + password
    if variant is Variant.V2007:
        if len(operator) != _OPERATOR_LENGTH:
            raise LocalProtocolError(
                f"operator code must be {_OPERATOR_LENGTH} bytes, got {len(operator)}"
            )
        head += operator
    return encode_frame(address, _WRITE[variant], head + data)


def read_reply(
    address: str,
    di: int,
    payload: bytes,
    variant: Variant = Variant.V2007,
    *,
    follow_up: bool = False,
    seq: int | None = None,
) -> bytes:
    """A normal read reply carrying ``payload`` (already encoded, offset not applied).

    ``follow_up`` sets the "more frames follow" bit; ``seq`` makes it the reply
    to a read-follow-up request (2007 appends the sequence byte).
    """
    function = _READ[variant] if seq is None else _FOLLOWUP[variant]
    control = DIRECTION_BIT | function | (FOLLOW_UP_BIT if follow_up else 0)
    data = _di_bytes(di, variant) + payload
    if seq is not None and variant is Variant.V2007:
        data += _byte(seq, "follow-up sequence number")
    return encode_frame(address, control, data)


def error_reply(
    address: str, function: int, flags: ErrorFlags, variant: Variant = Variant.V2007
) -> bytes:
    """An abnormal reply to a request with ``function`` (e.g. ``0x11`` gives control ``D1``)."""
    if int(flags) & ~0xFF:
        raise LocalProtocolError(f"error flags {int(flags):#x} do not fit one byte")
    return encode_frame(
        address, DIRECTION_BIT | ABNORMAL_BIT | (function & FUNCTION_MASK), bytes((int(flags),))
    )


def ack_reply(address: str, function: int, data: bytes = b"") -> bytes:
    """A normal reply with no DI (e.g. the acknowledgement of a write, control ``94``)."""
    return encode_frame(address, DIRECTION_BIT | (function & FUNCTION_MASK), data)


def read_address_reply(address: str) -> bytes:
    """A meter's reply to a read-address request (2007)."""
    return encode_frame(address, DIRECTION_BIT | Function2007.READ_ADDRESS, encode_address(address))


# Parsers ----------------------------------------------------------------------------


def _di(frame: Frame, variant: Variant) -> int:
    length = DI_LENGTH[variant]
    if len(frame.data) < length:
        raise RemoteDataError(
            f"{function_name(frame.function, variant)} from {frame.address}: "
            f"data of {len(frame.data)} bytes has no {length}-byte DI"
        )
    return int.from_bytes(frame.data[:length], "little")


def parse_request(frame: Frame, variant: Variant) -> Request:
    """What a master asked for (meter side)."""
    if frame.is_reply:
        raise RemoteDataError(f"frame from {frame.address} is a reply, not a request")
    function = frame.function
    data = frame.data
    length = DI_LENGTH[variant]
    if function == _READ[variant]:
        return ReadRequest(_di(frame, variant), data[length:])
    if function == _FOLLOWUP[variant]:
        di = _di(frame, variant)
        return ReadFollowup(di, data[length] if len(data) > length else 0)
    if function == _WRITE[variant]:
        di = _di(frame, variant)
        rest = data[length:]
        operator_length = _OPERATOR_LENGTH if variant is Variant.V2007 else 0
        head = _PASSWORD_LENGTH + operator_length
        if len(rest) < head:
            raise RemoteDataError(
                f"write of {format_di(di, variant)} to {frame.address}: "
                f"no room for password and operator code"
            )
        return WriteRequest(di, rest[head:], rest[:_PASSWORD_LENGTH], rest[_PASSWORD_LENGTH:head])
    if function == Function2007.BROADCAST_TIME:
        try:
            return BroadcastTime(decode_clock(data, LAYOUTS["broadcast"]))
        except ValueError as exc:
            raise RemoteDataError(f"broadcast time: {exc}") from None
    if variant is Variant.V2007 and function == Function2007.READ_ADDRESS:
        return ReadAddress()
    return OtherRequest(function, data)


def parse_reply(frame: Frame, variant: Variant) -> Reply:
    """What a meter answered (master side)."""
    control = frame.control
    if not control & DIRECTION_BIT:
        raise RemoteDataError(f"frame to {frame.address} is a request, not a reply")
    function = control & FUNCTION_MASK
    if control & ABNORMAL_BIT:
        return ErrorReply(ErrorFlags(frame.data[0] if frame.data else 0), function)
    data = frame.data
    # Comparisons rather than dicts keyed by the enum: hashing an enum member
    # runs Python code, and this is the hot path of every poll.
    is_2007 = variant == _V2007
    if function == (_READ_2007 if is_2007 else _READ_1997):
        length = 4 if is_2007 else 2
        if len(data) < length:
            _di(frame, variant)  # raises, naming the function and meter
        return _data_reply(
            int.from_bytes(data[:length], "little"), data[length:], bool(control & FOLLOW_UP_BIT)
        )
    if function == _FOLLOWUP[variant]:
        di = _di(frame, variant)
        length = DI_LENGTH[variant]
        if not is_2007:
            return DataReply(di, data[length:], bool(control & FOLLOW_UP_BIT))
        if len(data) < length + 1:
            raise RemoteDataError(f"follow-up reply from {frame.address} has no sequence byte")
        return DataReply(di, data[length:-1], bool(control & FOLLOW_UP_BIT), data[-1])
    if is_2007 and function == Function2007.READ_ADDRESS:
        return AddressReply(decode_address(data))
    return OtherReply(function, data)


def guess_variant(frame: Frame, default: Variant = Variant.V2007) -> Variant:
    """The variant a frame's function code implies, or ``default`` when both have it."""
    return variant_of_function(frame.function) or default
