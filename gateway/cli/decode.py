"""``metergw decode HEX...``: decode captured DL/T 645 bytes, one JSON object per event.

The bytes may hold several frames, ``FE`` wake-up bytes and line noise; each
frame and each run of discarded bytes is printed as one JSON line. Values are
printed as strings so that they stay exact. Exit 0 when at least one frame
decoded, 1 when none did, 2 on input that is not hex.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from protocols.dlt645 import Discarded, Frame, Reply, Request, Variant

HELP = "decode captured DL/T 645 bytes (hex) and print one JSON object per frame or discard"

EXIT_FRAMES = 0
EXIT_NO_FRAME = 1
EXIT_BAD_INPUT = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "hex",
        nargs="+",
        metavar="HEX",
        help="captured bytes in hex, spaces optional; several arguments are joined in order",
    )
    p.add_argument(
        "--variant",
        choices=["dlt645-2007", "dlt645-1997"],
        default="dlt645-2007",
        help="protocol edition for frames whose function code exists in both (default 2007)",
    )


def parse_hex(arguments: list[str]) -> bytes:
    """Join the hex arguments into bytes; ``ValueError`` names the first bad argument."""
    out = bytearray()
    for index, argument in enumerate(arguments, start=1):
        text = "".join(argument.split())
        try:
            out += bytes.fromhex(text)
        except ValueError:
            raise ValueError(
                f"argument {index} ({argument!r}) is not hex bytes "
                "(pairs of digits 0-9 A-F, spaces optional)"
            ) from None
    return bytes(out)


def run(args: argparse.Namespace) -> int:
    from protocols.dlt645 import Decoder, Discarded, Variant

    try:
        data = parse_hex(args.hex)
    except ValueError as exc:
        print(f"metergw decode: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    default = Variant(args.variant)
    decoder = Decoder()
    frames = 0
    for event in decoder.feed(data) + decoder.flush():
        frames += not isinstance(event, Discarded)
        print(json.dumps(describe_event(event, default), ensure_ascii=False))
    return EXIT_FRAMES if frames else EXIT_NO_FRAME


def describe_event(event: Frame | Discarded, default: Variant) -> dict[str, Any]:
    """The JSON object printed for one decoder event."""
    from protocols.dlt645 import Discarded

    if isinstance(event, Discarded):
        return {
            "event": "discarded",
            "reason": event.reason,
            "length": len(event.data),
            "data": event.data.hex(" ").upper(),
        }
    return describe_frame(event, default)


def describe_frame(frame: Frame, default: Variant) -> dict[str, Any]:
    """A JSON-ready description of a frame: header fields, then what its data means."""
    from protocols.dlt645 import (
        DataKindError,
        RemoteDataError,
        UnknownDataId,
        function_name,
        guess_variant,
        parse_reply,
        parse_request,
    )

    variant = guess_variant(frame, default)
    out: dict[str, Any] = {
        "event": "frame",
        "variant": str(variant),
        "address": frame.address,
        "control": f"{frame.control:02X}",
        "direction": "reply" if frame.is_reply else "request",
        "function": function_name(frame.function, variant),
        "function_code": f"{frame.function:02X}",
        "abnormal": frame.is_abnormal,
        "follow_up": frame.has_follow_up,
        "data": frame.data.hex(" ").upper(),
    }
    try:
        if frame.is_reply:
            out.update(_describe_reply(parse_reply(frame, variant), variant))
        else:
            out.update(_describe_request(parse_request(frame, variant), variant))
    except (RemoteDataError, UnknownDataId, DataKindError) as exc:
        out["error"] = str(exc)
    return out


def _describe_reply(reply: Reply, variant: Variant) -> dict[str, Any]:
    from protocols.dlt645 import AddressReply, DataReply, ErrorReply, format_di

    if isinstance(reply, ErrorReply):
        return {"error_code": f"{int(reply.flags):02X}", "error_flags": reply.names}
    if isinstance(reply, AddressReply):
        return {"meter_address": reply.address}
    if not isinstance(reply, DataReply):
        return {}
    out: dict[str, Any] = {"di": format_di(reply.di, variant)}
    if reply.seq is not None:
        out["seq"] = reply.seq
    out["payload"] = reply.payload.hex(" ").upper()
    out.update(_describe_payload(reply.di, reply.payload, variant))
    return out


def _describe_payload(di: int, payload: bytes, variant: Variant) -> dict[str, Any]:
    from protocols.dlt645 import (
        REGISTRY,
        decode_address,
        decode_datetime,
        decode_load_profile,
        decode_payload,
        format_di,
    )

    item = REGISTRY.get((variant, di))
    if item is None:
        return {"description": f"unknown {variant} data identifier"}
    out: dict[str, Any] = {"description": item.description}
    if item.kind == "load_profile":
        out["records"] = [
            {"start": r.start.isoformat(), "values": {k: str(v) for k, v in r.values.items()}}
            for r in decode_load_profile(payload)
        ]
        return out
    values: list[tuple[int, str | None, str, str]]
    if item.kind == "address":
        values = [(di, None, decode_address(payload), "")]
    elif item.kind in ("date", "time", "datetime", "freeze_time"):
        values = [(di, None, decode_datetime(di, payload, variant).isoformat(), "")]
    else:
        values = [(v.di, v.key, str(v.value), v.unit) for v in decode_payload(di, payload, variant)]
    out["values"] = [
        {"di": format_di(d, variant), "key": key, "value": value, "unit": unit}
        for d, key, value, unit in values
    ]
    return out


def _describe_request(request: Request, variant: Variant) -> dict[str, Any]:
    from protocols.dlt645 import (
        LOAD_PROFILE_DI,
        REGISTRY,
        BroadcastTime,
        ReadFollowup,
        ReadRequest,
        WriteRequest,
        format_di,
        parse_load_profile_request_extra,
    )

    if isinstance(request, BroadcastTime):
        return {"time": request.when.isoformat()}
    if not isinstance(request, ReadRequest | ReadFollowup | WriteRequest):
        return {}
    item = REGISTRY.get((variant, request.di))
    out: dict[str, Any] = {
        "di": format_di(request.di, variant),
        "description": item.description if item else f"unknown {variant} data identifier",
    }
    if item is not None and item.key is not None:
        out["key"] = item.key
    if isinstance(request, ReadFollowup):
        out["seq"] = request.seq
    elif isinstance(request, WriteRequest):
        out["write_data"] = request.data.hex(" ").upper()
    elif request.extra:
        out["extra"] = request.extra.hex(" ").upper()
        if variant == "dlt645-2007" and request.di == LOAD_PROFILE_DI:
            count, start = parse_load_profile_request_extra(request.extra)
            out["records"] = count
            out["start"] = start.isoformat()
    return out
