"""``metergw report daily -c FILE --meter ID --date YYYY-MM-DD [--json]``: a meter's day.

Computed from what the box holds: the local store of the ``[sinks.local]`` sink
(kept ``retention``, 7 days by default). It needs the meter's import registers
there: the total and tariffs 1-4 at the day's two midnights (daily freezes, or
polls either side) and the total at each 15-minute boundary (load-profile
records, or polls) for demand and completeness.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.analytics import DailyFigures
    from gateway.config import Config

HELP = (
    "a meter's daily figures (consumption per tariff, max demand, load factor, valley "
    "share, completeness) from the local store; needs [sinks.local] and its retention"
)
EXIT_NO_DATA = 1
EXIT_USAGE = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="report", metavar="REPORT", required=True)
    daily = sub.add_parser(
        "daily",
        help="one meter's figures for one day in its time zone",
        description=(
            "One meter's figures for one local day, from the local store ([sinks.local], "
            "readings kept `retention`, 7 days by default): consumption per tariff "
            "(sharp/peak/flat/valley) and total from the import registers at the day's "
            "midnights (the daily freezes where stored: exactly their difference), maximum "
            "15-minute demand and the end of its interval, load factor, valley share and "
            "completeness from the import total at each 15-minute boundary (load-profile "
            "records or polls). A day with missing intervals is 'estimated'. --json: "
            "energies and demand as decimal strings, ratios as numbers. Exit 1 when the "
            "store holds nothing of that meter and day, 2 for a bad option."
        ),
    )
    daily.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML config")
    daily.add_argument("--meter", required=True, help="meter id, or its address")
    daily.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the meter's day")
    daily.add_argument("--json", action="store_true", help="one JSON object")


def _zone_of(cfg: Config, meter: str) -> tuple[str, tzinfo] | None:
    """The configured meter's id and zone; None when the config has no such meter."""
    import zoneinfo

    for bus in cfg.buses:
        for m in bus.meters:
            if meter in (m.meter_id, m.ident):
                return m.meter_id, zoneinfo.ZoneInfo(m.timezone or cfg.gateway.timezone)
    return None


def run(args: argparse.Namespace) -> int:
    import sqlite3
    import zoneinfo

    from gateway.analytics import daily_from_store, stored_meter_ids
    from gateway.config import ConfigError, load_config
    from gateway.forward.local import local_path, open_local

    try:
        day = date.fromisoformat(args.date)
        if len(args.date) != 10:
            raise ValueError
    except ValueError:
        print(f"metergw report: --date: {args.date!r} is not a date YYYY-MM-DD", file=sys.stderr)
        return EXIT_USAGE
    meter = args.meter.strip()
    if not meter or any(c.isspace() for c in meter):
        print(f"metergw report: --meter: {args.meter!r} is not a meter id", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    found = _zone_of(cfg, meter)
    # Concentrator meters are not configured: their ids are ``proto:ADDRESS``.
    meter_id, zone = found or (meter, zoneinfo.ZoneInfo(cfg.gateway.timezone))
    path = local_path(cfg)
    if not Path(path).exists():
        why = "" if "local" in cfg.sinks.enabled() else " ([sinks.local] is not enabled)"
        print(f"no local store at {path}{why}: report daily reads it", file=sys.stderr)
        return EXIT_NO_DATA
    try:
        conn = open_local(path, readonly=True)
        ids = [meter_id] if found else stored_meter_ids(conn, meter_id)
        if found is None and len(ids) > 1:
            print(f"metergw report: --meter: {meter!r} names {', '.join(ids)}", file=sys.stderr)
            return EXIT_USAGE
        figures = daily_from_store(conn, ids[0], day, zone) if ids else None
    except sqlite3.Error as exc:
        print(f"{path}: cannot read the local store: {exc}", file=sys.stderr)
        return EXIT_NO_DATA
    if figures is None or not figures.has_data:
        print(
            f"no readings of {meter} for {day} ({getattr(zone, 'key', zone)}) in the local "
            f"store {path} (kept for [sinks.local] retention)",
            file=sys.stderr,
        )
        return EXIT_NO_DATA
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps(as_json(figures)).decode() + "\n")
    else:
        _print_table(figures)
    return 0


def _s(value: object) -> str | None:
    return None if value is None else str(value)


def as_json(f: DailyFigures) -> dict[str, Any]:
    """The report's JSON object: energies and demand as decimal strings, ratios as numbers."""
    from gateway.analytics import ENERGY_FIGURES

    return {
        "meter": f.meter,
        "date": f.day.isoformat(),
        "energy_kwh": {k: _s(f.energy_kwh.get(k)) for k in ENERGY_FIGURES},
        "max_demand_kw": _s(f.max_demand_kw),
        "max_demand_at": f.max_demand_at.isoformat() if f.max_demand_at else None,
        "load_factor": None if f.load_factor is None else float(f.load_factor),
        "valley_share": None if f.valley_share is None else float(f.valley_share),
        "completeness": float(f.completeness),
        "quality": "+".join(f.quality.names()) or "ok",
    }


def _print_table(f: DailyFigures) -> None:
    from gateway.analytics import ENERGY_FIGURES

    def show(value: object) -> str:
        return "-" if value is None else str(value)

    zone = getattr(f.zone, "key", str(f.zone))
    print(f"meter {f.meter}  day {f.day} ({zone})  quality {'+'.join(f.quality.names()) or 'ok'}")
    rows = [(f"energy {k} (kWh)", show(f.energy_kwh.get(k))) for k in ENERGY_FIGURES]
    at = f.max_demand_at.strftime("%H:%M") if f.max_demand_at else "-"
    rows += [
        ("max 15-min demand (kW)", f"{show(f.max_demand_kw)} (interval ending {at})"),
        ("load factor", show(f.load_factor)),
        ("valley share", show(f.valley_share)),
        (
            "completeness",
            f"{f.completeness} ({f.intervals_present}/{f.intervals_expected} intervals)",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    for note in f.notes:
        print(f"  note: {note}")
