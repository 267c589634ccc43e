"""``metergw check-config FILE`` (or ``-c FILE``): validate a config, touching nothing."""

from __future__ import annotations

import argparse
import sys

HELP = (
    "validate a config file: print every problem at once and exit 2, or a summary "
    "(and any warnings) and exit 0"
)

EXIT_CONFIG = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="the TOML config file")
    # Every other command takes its config as ``-c FILE``: so does this one.
    p.add_argument("-c", "--config", metavar="FILE", help="the same, as the other commands take it")


def run(args: argparse.Namespace) -> int:
    from gateway.config import check_config_file

    given = {f for f in (args.file, args.config) if f is not None}
    if len(given) != 1:
        print(
            "metergw check-config: name one config file: check-config FILE or -c FILE",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    (file,) = given
    checked = check_config_file(file)
    for problem in (*checked.problems, *checked.warnings):
        print(problem, file=sys.stderr)
    cfg = checked.config
    if cfg is None:
        return EXIT_CONFIG
    meters = sum(len(b.meters) for b in cfg.buses)
    on = cfg.sinks.enabled()
    sinks = [name if name in on else f"{name} (disabled)" for name in cfg.sinks.names()]
    warned = f", {len(checked.warnings)} warning(s)" if checked.warnings else ""
    print(
        f"{file}: ok: gateway {cfg.gateway.name!r}, {len(cfg.buses)} buses, "
        f"{meters} meters, {len(cfg.poll_groups)} poll groups, "
        f"ingest {'on' if cfg.ingest else 'off'}, sinks {', '.join(sinks) or 'none'}{warned}"
    )
    return 0
