"""DL/T 645 codec throughput: frames/s on one core, decode and encode.

Cases:
- ``read 00010000``: the typical poll reply (one energy value, 20-byte frame),
  decoded by ``Decoder.feed`` + ``parse_reply`` + ``decode_payload``.
- ``block 0001FF00``: energy total + 4 tariffs (5 values, 36-byte frame), same path.
- ``load profile x16``: 16 records in a 208-byte frame (196 data bytes), decoded
  by ``Decoder.feed`` + ``parse_reply`` + ``decode_load_profile`` (the
  ``decode_payload`` of that kind).
- ``baseline``: a minimal pure-Python parse of the read reply to one Decimal
  (find start, check checksum, remove offset, BCD to Decimal), no events, no
  validation beyond the checksum: the ceiling the codec is compared with.

Prints a table and writes ``bench/results/codec.json`` with machine facts.
Each figure is the median of 5 runs of about 1 s each.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from protocols.dlt645 import (
    DataReply,
    Decoder,
    LoadRecord,
    Variant,
    decode_load_profile,
    decode_payload,
    encode_load_profile,
    encode_payload,
    parse_reply,
    read_reply,
)

RESULTS = Path(__file__).resolve().parent / "results" / "codec.json"
V07 = Variant.V2007
ADDRESS = "000000000001"
RUNS = 5
RUN_SECONDS = 1.0


def rate(step: Callable[[], object], batch: int = 2000) -> float:
    """Median calls per second of ``step`` over ``RUNS`` runs."""
    rates = []
    for _ in range(RUNS):
        calls = 0
        start = time.perf_counter()
        while True:
            for _ in range(batch):
                step()
            calls += batch
            elapsed = time.perf_counter() - start
            if elapsed >= RUN_SECONDS:
                break
        rates.append(calls / elapsed)
    return statistics.median(rates)


def main() -> int:
    energy = [Decimal("123456.78")]
    block = [
        Decimal("1000.00"),
        Decimal("100.01"),
        Decimal("200.02"),
        Decimal("300.03"),
        Decimal("399.94"),
    ]
    start = datetime(2026, 11, 23)
    records = [
        LoadRecord(
            start + timedelta(minutes=15 * n),
            {
                "energy_import_total_kwh": Decimal(123400 + n).scaleb(-2),
                "power_active_total_kw": Decimal(-5000 + 997 * n).scaleb(-4),
            },
        )
        for n in range(16)
    ]
    read_frame = read_reply(ADDRESS, 0x00010000, encode_payload(0x00010000, energy))
    block_frame = read_reply(ADDRESS, 0x0001FF00, encode_payload(0x0001FF00, block))
    profile_frame = read_reply(ADDRESS, 0x06000001, encode_load_profile(records))
    decoder = Decoder()

    def decode_values(frame: bytes) -> Callable[[], object]:
        def step() -> object:
            out = []
            for event in decoder.feed(frame):
                reply = parse_reply(event, V07)  # type: ignore[arg-type]
                assert isinstance(reply, DataReply)
                out += decode_payload(reply.di, reply.payload, V07)
            return out

        return step

    def decode_profile() -> object:
        out = []
        for event in decoder.feed(profile_frame):
            reply = parse_reply(event, V07)  # type: ignore[arg-type]
            assert isinstance(reply, DataReply)
            out += decode_load_profile(reply.payload)
        return out

    sub33 = bytes((b - 0x33) & 0xFF for b in range(256))

    def baseline() -> object:
        buf = read_frame
        s = buf.find(0x68)
        length = buf[s + 9]
        end = s + 12 + length
        if sum(buf[s : end - 2]) & 0xFF != buf[end - 2]:
            return None
        data = buf[s + 10 : end - 2].translate(sub33)
        return Decimal(data[:3:-1].hex()).scaleb(-2)

    # Correctness of what is measured, before measuring it.
    assert [v.value for v in decode_values(read_frame)()] == energy  # type: ignore[attr-defined]
    assert [v.value for v in decode_values(block_frame)()] == block  # type: ignore[attr-defined]
    assert decode_profile() == records
    assert baseline() == energy[0]

    cases = [
        ("read 00010000", "decode", len(read_frame), 1, decode_values(read_frame)),
        ("read 00010000", "encode", len(read_frame), 1,
         lambda: read_reply(ADDRESS, 0x00010000, encode_payload(0x00010000, energy))),
        ("block 0001FF00", "decode", len(block_frame), 5, decode_values(block_frame)),
        ("block 0001FF00", "encode", len(block_frame), 5,
         lambda: read_reply(ADDRESS, 0x0001FF00, encode_payload(0x0001FF00, block))),
        ("load profile x16", "decode", len(profile_frame), 32, decode_profile),
        ("load profile x16", "encode", len(profile_frame), 32,
         lambda: read_reply(ADDRESS, 0x06000001, encode_load_profile(records))),
        ("baseline parse", "decode", len(read_frame), 1, baseline),
    ]  # fmt: skip
    results: list[dict[str, Any]] = []
    print(f"{'case':<18} {'dir':<7} {'bytes':>5} {'frames/s':>11} {'values/s':>11}")
    for name, direction, size, values, step in cases:
        frames = rate(step)
        results.append(
            {
                "case": name,
                "direction": direction,
                "frame_bytes": size,
                "values_per_frame": values,
                "frames_per_s": round(frames),
                "values_per_s": round(frames * values),
            }
        )
        print(f"{name:<18} {direction:<7} {size:>5} {frames:>11,.0f} {frames * values:>11,.0f}")
    typical = next(
        r for r in results if r["case"] == "read 00010000" and r["direction"] == "decode"
    )
    base = next(r for r in results if r["case"] == "baseline parse")
    ratio = typical["frames_per_s"] / base["frames_per_s"]
    print(f"typical read decode is {ratio:.0%} of the bare baseline parse")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "codec",
                "when": datetime.now().astimezone().isoformat(timespec="seconds"),
                "machine": {
                    "cpu_count": os.cpu_count(),
                    "python": platform.python_version(),
                    "implementation": platform.python_implementation(),
                    "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(),
                },
                "method": f"median of {RUNS} runs of {RUN_SECONDS} s, one core",
                "results": results,
                "typical_vs_baseline": round(ratio, 3),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
