"""``metergw query --meter ADDR --since 1h``: readings kept on the box by the local sink."""

from __future__ import annotations

import argparse
import sys

HELP = "show a meter's readings from the local store (the [sinks.local] sink)"

EXIT_CONFIG = 2
EXIT_NO_DATA = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML config file")
    p.add_argument("--meter", required=True, help="meter id, or just its address")
    p.add_argument("--since", default="1h", help="how far back: '15m', '1h', '7d' (default 1h)")
    p.add_argument("--key", help="only this quantity key (e.g. energy_import_total_kwh)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    import sqlite3
    import time
    from datetime import UTC, datetime

    import orjson

    from gateway.config import ConfigError, load_config
    from gateway.config.base import parse_duration
    from gateway.forward.local import local_path, open_local, query_readings
    from gateway.model import Quality

    try:
        cfg = load_config(args.config)
        since_s = parse_duration(args.since)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:
        print(f"--since: {exc}", file=sys.stderr)
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
        return 0 if rows else EXIT_NO_DATA
    if not rows:
        print(f"no readings of {args.meter} in the last {args.since} ({path})", file=sys.stderr)
        return EXIT_NO_DATA
    table = [("time (UTC)", "meter", "key", "value", "unit", "quality")]
    for r in rows:
        when = datetime.fromtimestamp(r.ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        table.append(
            (when, r.meter, r.key, r.value, r.unit, "+".join(Quality(r.quality).names()) or "ok")
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0
