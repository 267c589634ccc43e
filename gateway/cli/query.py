"""``metergw query --meter ADDR --since 1h``: readings kept on the box by the local sink.

A table (times in ``--tz``, UTC by default, the header says which), CSV with
a header (``--csv``), or JSON lines (``--json``). A reader that stops early
(``| head -1``) ends it quietly (see :func:`gateway.cli.main`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import tzinfo
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.forward.local import LocalRow

HELP = "show a meter's readings from the local store (the [sinks.local] sink)"

EXIT_CONFIG = 2
EXIT_NO_DATA = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML config file")
    p.add_argument("--meter", required=True, help="meter id, or just its address")
    p.add_argument("--since", default="1h", help="how far back: '15m', '1h', '7d' (default 1h)")
    p.add_argument("--key", help="only this quantity key (e.g. energy_import_total_kwh)")
    p.add_argument(
        "--tz",
        default="UTC",
        metavar="ZONE",
        help="show times in this IANA time zone, e.g. Asia/Shanghai (default UTC)",
    )
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="one JSON object per line")
    form.add_argument("--csv", action="store_true", help="CSV with a header line")


def _zone(name: str) -> tzinfo:
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        from gateway.config.base import did_you_mean

        hint = did_you_mean(name, zoneinfo.available_timezones())
        raise ValueError(f"unknown time zone {name!r}" + (f"; {hint}" if hint else "")) from None


def run(args: argparse.Namespace) -> int:
    import sqlite3
    import time

    from gateway.config import ConfigError, load_config
    from gateway.config.base import parse_duration
    from gateway.forward.local import local_path, open_local, query_readings

    try:
        zone = _zone(args.tz)
    except ValueError as exc:
        print(f"metergw query: --tz: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        since_s = parse_duration(args.since)
    except ValueError as exc:
        print(f"metergw query: --since: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    path = local_path(cfg)
    try:
        conn = open_local(path, readonly=True)
        rows = query_readings(
            conn, args.meter, time.time_ns() // 1_000_000 - int(since_s * 1000), args.key
        )
    except sqlite3.Error as exc:
        print(f"{path}: cannot read the local store: {exc}", file=sys.stderr)
        return EXIT_NO_DATA
    if args.json:
        _print_json(rows)
        return 0 if rows else EXIT_NO_DATA
    if not rows:
        print(f"no readings of {args.meter} in the last {args.since} ({path})", file=sys.stderr)
        return EXIT_NO_DATA
    if args.csv:
        _print_csv(rows, zone)
    else:
        _print_table(rows, zone, args.tz)
    return 0


def _quality(row: LocalRow) -> str:
    from gateway.model import Quality

    return "+".join(Quality(row.quality).names()) or "ok"


def _print_json(rows: Sequence[LocalRow]) -> None:
    import orjson

    from gateway.model import Quality

    for r in rows:
        obj = {
            "meter": r.meter,
            "key": r.key,
            "ts_ms": r.ts_ms,
            "value": r.value,
            "unit": r.unit,
            "quality": Quality(r.quality).names(),
            "source": r.source,
        }
        sys.stdout.write(orjson.dumps(obj).decode() + "\n")


def _print_csv(rows: Sequence[LocalRow], zone: tzinfo) -> None:
    import csv
    from datetime import datetime

    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["time", "ts_ms", "meter", "key", "value", "unit", "quality", "source"])
    for r in rows:
        when = datetime.fromtimestamp(r.ts_ms / 1000, zone).isoformat(timespec="milliseconds")
        out.writerow([when, r.ts_ms, r.meter, r.key, r.value, r.unit, _quality(r), r.source])


def _print_table(rows: Sequence[LocalRow], zone: tzinfo, zone_name: str) -> None:
    from datetime import datetime

    table = [(f"time ({zone_name})", "meter", "key", "value", "unit", "quality")]
    for r in rows:
        when = datetime.fromtimestamp(r.ts_ms / 1000, zone).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        table.append((when, r.meter, r.key, r.value, r.unit, _quality(r)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
