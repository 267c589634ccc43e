"""``metersim``: run a scenario file, or serve one kind of meter from the command line.

::

    metersim run config/sim/demo.toml
    metersim serve dlt645 --tcp 127.0.0.1:16001 --meters 000000000001,000000000002
    metersim serve dlt645 --pty var/rs485-1 --variant dlt645-1997 --baud 1200 --emulate-timing
    metersim serve modbus --tcp 127.0.0.1:15020 --profile sdm630 --unit 1
    metersim serve concentrator --broker 127.0.0.1:1883 --meters 500 --rate 1000

Each prints one line per bus (``name<TAB>protocol<TAB>device-or-host:port``)
once everything listens, then runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from simulator.scenario.model import ScenarioError, ScenarioFile, validate_scenario
from simulator.scenario.runner import Scenario, load_scenario


def _meters(text: str) -> list[str]:
    """``A,B,C..D`` -> addresses (``..`` is an inclusive range)."""
    out: list[str] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        first, sep, last = item.partition("..")
        if sep:
            out.extend(f"{n:012d}" for n in range(int(first), int(last) + 1))
        else:
            out.append(item)
    return out


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=1, help="scenario seed (default 1)")
    p.add_argument("--speed", type=float, default=1.0, help="sim seconds per real second")
    p.add_argument("--start", type=datetime.fromisoformat, help="sim start (ISO 8601 with zone)")
    p.add_argument("--tz", default="Asia/Shanghai", help="the meters' time zone")
    p.add_argument("--control-port", type=int, help="serve the fault API on 127.0.0.1:PORT")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")


def _transport(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP (port 0 = any)")
    g.add_argument("--pty", nargs="?", const="", metavar="LINK",
                   help="serve on a pseudo-terminal, optionally symlinked at LINK")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metersim", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario file")
    run.add_argument("scenario", help="scenario TOML file")
    run.add_argument("--control-port", type=int, help="override the control API port")
    run.add_argument("-v", "--verbose", action="store_true")
    serve = sub.add_parser("serve", help="serve one bus, server or concentrator")
    kinds = serve.add_subparsers(dest="kind", required=True)

    d = kinds.add_parser("dlt645", help="a DL/T 645 bus")
    _transport(d)
    d.add_argument("--meters", type=_meters, default=["000000000001"],
                   help="addresses, comma separated; A..B is a range")  # fmt: skip
    d.add_argument("--variant", choices=("dlt645-2007", "dlt645-1997"), default="dlt645-2007")
    d.add_argument("--baud", type=int, default=2400)
    d.add_argument("--parity", choices=("E", "O", "N"), default="E")
    d.add_argument("--emulate-timing", action="store_true", help="reply at real line speed")
    d.add_argument("--turnaround", type=float, default=0.02, help="meter reply delay, s")
    d.add_argument("--name", default="dlt645")
    _common(d)

    m = kinds.add_parser("modbus", help="a Modbus TCP server or RTU line")
    _transport(m)
    m.add_argument("--profile", default="sdm630",
                   help="profile name (config/profiles, see docs/meters.md) or path")  # fmt: skip
    m.add_argument("--unit", type=int, action="append", help="unit id (repeatable; default 1)")
    m.add_argument("--baud", type=int, default=9600)
    m.add_argument("--name", default="modbus")
    _common(m)

    c = kinds.add_parser("concentrator", help="an MQTT concentrator")
    c.add_argument("--broker", default="127.0.0.1:1883", metavar="HOST:PORT")
    c.add_argument("--gw", default="conc-1", help="concentrator id (topic level)")
    c.add_argument("--meters", type=int, default=10, help="number of virtual meters")
    c.add_argument("--first", default="000000100001", help="first meter address")
    pace = c.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, help="readings per second (0 = as fast as possible)")
    pace.add_argument("--interval", type=float, help="read every meter once per interval, s")
    c.add_argument("--batch", type=int, default=100, help="readings per message")
    c.add_argument("--backlog", type=int, default=10_000, help="messages kept while offline")
    _common(c)
    return parser


def scenario_from_args(args: argparse.Namespace) -> ScenarioFile:
    """The one-endpoint scenario ``metersim serve`` runs."""
    sim: dict[str, Any] = {"seed": args.seed, "speed": args.speed, "tz": args.tz}
    if args.start is not None:
        sim["start"] = args.start
    doc: dict[str, Any] = {"simulation": sim}
    link = {"tcp": args.tcp} if args.kind != "concentrator" and args.tcp else None
    where = link or ({"pty": args.pty} if args.kind != "concentrator" else {})
    if args.kind == "dlt645":
        bus = {"name": args.name, "variant": args.variant, "baud": args.baud}
        bus |= {"parity": args.parity, "emulate_timing": args.emulate_timing}
        bus |= {"turnaround": args.turnaround, "meters": args.meters}
        doc["dlt645"] = [{**bus, **where}]
    elif args.kind == "modbus":
        server = {"name": args.name, "profile": args.profile, "baud": args.baud}
        doc["modbus"] = [{**server, "units": args.unit or [1], **where}]
    else:
        conc: dict[str, Any] = {"gw": args.gw, "broker": args.broker, "meters": args.meters}
        conc |= {"first": args.first, "batch": args.batch, "backlog": args.backlog}
        if args.rate is not None:
            conc["rate"] = args.rate
        if args.interval is not None:
            conc["interval"] = args.interval
        doc["concentrator"] = [conc]
    return validate_scenario(doc, "<command line>")


async def _serve(scenario: Scenario) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        endpoints = await scenario.start()
        for ep in endpoints:
            print(ep, flush=True)
        await stop.wait()
    finally:
        await scenario.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metersim`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    try:
        if args.command == "run":
            scenario = load_scenario(args.scenario, control_port=args.control_port)
        else:
            scenario = Scenario(scenario_from_args(args), control_port=args.control_port)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(scenario))
    except ScenarioError as exc:
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"metersim: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
