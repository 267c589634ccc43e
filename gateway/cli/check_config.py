"""``metergw check-config FILE``: validate a config file without touching anything."""

from __future__ import annotations

import argparse
import sys

HELP = "validate a config file; print every problem and exit 2, or a summary and exit 0"

EXIT_CONFIG = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="the TOML config file")


def run(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config

    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    meters = sum(len(b.meters) for b in cfg.buses)
    sinks = [name for name in ("influx", "mqtt", "local") if getattr(cfg.sinks, name) is not None]
    print(
        f"{args.file}: ok: gateway {cfg.gateway.name!r}, {len(cfg.buses)} buses, "
        f"{meters} meters, {len(cfg.poll_groups)} poll groups, "
        f"ingest {'on' if cfg.ingest else 'off'}, sinks {', '.join(sinks) or 'none'}"
    )
    return 0
