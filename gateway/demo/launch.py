"""``make demo``: the simulator and the gateway together, readings flowing.

Starts the meter simulator (``config/sim/demo.toml``: two DL/T 645 lines on
pseudo terminals, a Modbus TCP meter, an MQTT concentrator, and one meter
that stops answering for a while) and the gateway (``metergw run -c
config/demo.toml``: embedded MQTT broker, local store, status API on
127.0.0.1:8181), then shows the gateway's status live until Ctrl-C or
``--duration`` seconds. State and logs go to ``var/demo/``.

Both run as child processes, each in its own process group, and die with the
demo: on Ctrl-C or SIGTERM the gateway is stopped first (it commits and
closes cleanly), then the simulator; anything still alive after a grace
period is killed with its whole group, and the kernel kills them too if the
demo itself is killed (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp
from rich.console import Console

from gateway.demo.liveview import LiveView, summary_line

ROOT = Path(__file__).resolve().parents[2]
STATE = Path("var/demo")
GATEWAY_CONFIG = Path("config/demo.toml")
SIM_SCENARIO = Path("config/sim/demo.toml")
STATUS_URL = "http://127.0.0.1:8181"
SIM_ENDPOINTS = (Path("var/demo/rs485-1"), Path("var/demo/rs485-2"))
DEMO_PORTS = {
    8181: "the gateway's status API",
    11883: "the gateway's embedded MQTT broker",
    15020: "the simulator's Modbus TCP meter",
    18090: "the simulator's control API",
}
"""The fixed local ports of config/demo.toml and config/sim/demo.toml."""
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGTERM the child if the demo dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


class Child:
    """A child process in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, env: Mapping[str, str] | None = None) -> None:
        """Start it (cwd: the repository root)."""
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),  # runs only prctl between fork and exec
            env={**os.environ, **(env or {})},
        )

    @property
    def pid(self) -> int | None:
        """Process id once started."""
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        """Started and not exited."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status once it exited."""
        return None if self.proc is None else self.proc.poll()

    async def stop(self, grace: float) -> int | None:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL the group."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, grace)
        # Whatever is left in the group (the child itself if it hung, or any
        # grandchild it started) goes now.
        self._signal(signal.SIGKILL)
        code = await asyncio.to_thread(proc.wait)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def tail(self, lines: int = 15) -> str:
        """The last lines of its log, for a failure message."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def fresh_state() -> None:
    """Start each demo with an empty buffer; the simulator recreates its links."""
    if STATE.exists():
        shutil.rmtree(STATE)
    STATE.mkdir(parents=True)


async def fetch_status(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    """``GET /status``, or ``None`` when the gateway does not answer (yet)."""
    try:
        async with session.get(f"{url}/status", timeout=aiohttp.ClientTimeout(total=2)) as r:
            if r.status != 200:
                return None
            doc: dict[str, Any] = await r.json()
            return doc
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def _wait_for(
    what: str, ready: Callable[[], bool], children: Sequence[Child], stop: asyncio.Event
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        for c in children:
            if not c.running:
                raise DemoError(f"{c.name} exited early (status {c.returncode}):\n{c.tail()}")
        if stop.is_set():
            raise DemoError("interrupted while starting", code=130)
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {START_TIMEOUT_S:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


class DemoError(Exception):
    """The demo could not start or a child died; the message says which and why."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def busy_ports(ports: Mapping[int, str] = DEMO_PORTS) -> list[str]:
    """The demo's ports that something on 127.0.0.1 already listens on, named."""
    busy = []
    for port, what in ports.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(f"{port} ({what})")
    return busy


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


async def run_demo(args: argparse.Namespace, console: Console) -> int:
    """Start both, show the live view, stop both. Returns the exit status."""
    if not (ROOT / GATEWAY_CONFIG).is_file():
        # Installed from a wheel: there is no repository to run in (var/demo, config/).
        console.print(
            f"metergw demo: runs in a clone of the repository ({ROOT / GATEWAY_CONFIG} is "
            "missing): git clone the project and run 'make demo' there.",
            markup=False,
        )
        return 1
    os.chdir(ROOT)
    busy = busy_ports()
    if busy:  # an older demo still running would answer in place of this one
        console.print(
            "metergw demo: port(s) already in use on 127.0.0.1: "
            + ", ".join(busy)
            + ". Is another demo still running? Stop it (or free the ports) and retry.",
            markup=False,
        )
        return 1
    fresh_state()
    sim = Child(
        "simulator",
        [sys.executable, "-m", "simulator.cli", "run", str(args.scenario), *args.sim_arg],
        STATE / "simulator.log",
    )
    gateway = Child(
        "gateway",
        [sys.executable, "-m", "gateway", "run", "-c", str(GATEWAY_CONFIG)],
        STATE / "gateway.log",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.duration:
        loop.call_later(args.duration, stop.set)
    view = LiveView(console, interactive=console.is_terminal and not args.plain)
    say = console.print
    code = 0
    try:
        say(f"metergw demo: starting the simulator ({args.scenario}); logs in {STATE}/")
        sim.start()
        say(f"metergw demo: simulator pid {sim.pid}")
        await _wait_for(
            "the simulator's serial lines and Modbus port",
            lambda: all(p.exists() for p in SIM_ENDPOINTS) and _port_open("127.0.0.1", 15020),
            [sim],
            stop,
        )
        say(f"metergw demo: starting the gateway (metergw run -c {GATEWAY_CONFIG})")
        gateway.start({"PYTHONUNBUFFERED": "1"})
        say(f"metergw demo: gateway pid {gateway.pid}")
        async with aiohttp.ClientSession() as session:
            await _wait_for(
                f"the gateway's status API at {STATUS_URL}",
                lambda: _port_open("127.0.0.1", 8181),
                [sim, gateway],
                stop,
            )
            say(
                f"metergw demo: running; status API {STATUS_URL}/status, metrics "
                f"{STATUS_URL}/metrics; Ctrl-C stops everything"
            )

            async def fetch() -> dict[str, Any] | None:
                for c in (sim, gateway):
                    if not c.running:
                        stop.set()
                return await fetch_status(session, STATUS_URL)

            await view.run(fetch, stop, footer="Ctrl-C stops the demo")
            final = await fetch_status(session, STATUS_URL)
        for c in (sim, gateway):
            if not c.running:
                say(f"metergw demo: {c.name} exited unexpectedly (status {c.returncode}):")
                say(c.tail(), markup=False)
                code = 1
        if final is not None:
            say("metergw demo: final " + summary_line(final), markup=False, highlight=False)
            for line in by_protocol(final):
                say(f"metergw demo:   {line}", markup=False, highlight=False)
    except DemoError as exc:
        say(f"metergw demo: {exc}", markup=False)
        code = exc.code
    finally:
        say("metergw demo: stopping the gateway, then the simulator")
        gw_code = await gateway.stop(STOP_TIMEOUT_S)
        sim_code = await sim.stop(5.0)
        say(f"metergw demo: gateway exited with {gw_code}, simulator with {sim_code}")
        if gw_code not in (0, None):
            code = code or 1
            say(gateway.tail(), markup=False)
    if code == 0:
        say(
            f"metergw demo: done. The readings stay in {STATE}/local.sqlite: "
            f"metergw query -c {GATEWAY_CONFIG} --meter 000000000001; "
            f"logs: {gateway.log_path}, {sim.log_path}"
        )
    return code


def by_protocol(doc: Mapping[str, Any]) -> list[str]:
    """Readings and meters per protocol, from a ``/status`` document."""
    readings: dict[str, int] = {}
    meters: dict[str, int] = {}
    for m in doc.get("meters", []):
        proto = str(m.get("protocol") or "?")
        readings[proto] = readings.get(proto, 0) + int(m.get("readings") or 0)
        meters[proto] = meters.get(proto, 0) + 1
    return [
        f"{proto:12} {meters[proto]:3} meters {readings[proto]:6} readings"
        for proto in sorted(readings)
    ]


def build_parser() -> argparse.ArgumentParser:
    """The demo's options (``make demo`` passes none)."""
    p = argparse.ArgumentParser(prog="python -m gateway.demo", description=__doc__.split("\n")[0])
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop cleanly after this many seconds"
    )
    p.add_argument(
        "--plain", action="store_true", help="plain log lines even on a terminal (no live view)"
    )
    p.add_argument(
        "--scenario",
        type=Path,
        default=SIM_SCENARIO,
        help=f"the simulator's scenario (default {SIM_SCENARIO}; it must keep the same endpoints)",
    )
    p.add_argument(
        "--sim-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the simulator's 'run' command (repeatable)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``make demo``."""
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:
        # Log lines in a file or a CI log: never wrap them at 80 columns.
        console = Console(soft_wrap=True)
    return asyncio.run(run_demo(args, console))


if __name__ == "__main__":
    sys.exit(main())
