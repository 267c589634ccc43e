"""``metergw backfill -c FILE --meter ID --from ISO8601 --to ISO8601``: fill one gap by hand.

When the daemon runs (its status API answers), the backfill is *filed* in the gap
ledger: the daemon picks it up within seconds and reads it a slice at a time
between its polls (the bus has one master: this command never talks to the
meter then), and this command follows its progress. When the daemon does not
run, this command reads the meter's records itself, through the same backfill
and write path (validation, the buffer, the ledger). A backfill cut short
(Ctrl-C, the meter stops answering) stays in the ledger and resumes at the
daemon's next start. Progress is a bar on a terminal, plain lines otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
import urllib.error
import urllib.request
import zoneinfo
from typing import Any

HELP = "fill a meter's data between two times from its records (by hand, or filed for the daemon)"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
FOLLOW_EVERY_S = 1.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML config file")
    p.add_argument("--meter", required=True, metavar="ID", help="the meter's id in the config")
    p.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="ISO8601",
        help="start (exclusive); without an offset, in the meter's time zone",
    )
    p.add_argument(
        "--to",
        dest="end",
        required=True,
        metavar="ISO8601",
        help="end (inclusive); without an offset, in the meter's time zone",
    )
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="with the daemon running: file the backfill and return at once",
    )


def parse_time(text: str, tz: str, what: str) -> int:
    """An ISO 8601 time -> ms UTC (a naive one is in ``tz``); ValueError naming ``what``."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} {text!r}: not an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zoneinfo.ZoneInfo(tz))
    return int(when.timestamp() * 1000)


def daemon_answers(cfg: Any) -> bool | None:
    """Whether the daemon's status API answers; ``None`` when the config has none."""
    http = cfg.http
    if not http.enabled:
        return None
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    try:
        with urllib.request.urlopen(f"http://{host}:{http.port}/healthz", timeout=2.0):
            return True
    except urllib.error.HTTPError:
        return True  # it answered (a 503 while stuck is still a running daemon)
    except (urllib.error.URLError, OSError):
        return False


class Progress:
    """A bar on a terminal, a line per change otherwise."""

    def __init__(self, gap_id: str) -> None:
        self.gap_id = gap_id
        self.tty = sys.stdout.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._last = ""
        if self.tty:
            from rich.progress import Progress as Bar

            self._bar = Bar()
            self._bar.start()
            self._task = self._bar.add_task(f"backfill {gap_id}", total=100)

    def show(self, doc: dict[str, object]) -> None:
        """One ledger row's progress (``GapRecord.to_json``)."""
        pct = float(str(doc.get("progress", 0))) * 100
        line = (
            f"backfill {self.gap_id}: {doc.get('state')}, {pct:.0f} % read, "
            f"{doc.get('recovered')}/{doc.get('expected')} intervals recovered"
        )
        if self._bar is not None:
            self._bar.update(self._task, completed=pct, description=line)
        elif line != self._last:
            print(line, flush=True)
        self._last = line

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def run(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    from gateway import logs

    logs.configure(cfg.logging.level, cfg.logging.format, cfg.logging.components)  # on stderr
    found = [(b, m) for b in cfg.buses for m in b.meters if m.meter_id == args.meter]
    if not found:
        print(f"metergw backfill: {args.config}: no polled meter {args.meter!r}", file=sys.stderr)
        return EXIT_USAGE
    bus, meter = found[0]
    tz = meter.timezone or cfg.gateway.timezone
    try:
        start_ms = parse_time(args.start, tz, "--from")
        end_ms = parse_time(args.end, tz, "--to")
    except ValueError as exc:
        print(f"metergw backfill: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if end_ms <= start_ms:
        print("metergw backfill: --to must be later than --from", file=sys.stderr)
        return EXIT_USAGE
    if end_ms > time.time() * 1000 + 60_000:
        print("metergw backfill: --to is in the future", file=sys.stderr)
        return EXIT_USAGE
    running = daemon_answers(cfg)
    if running is not False:
        return _file(args, cfg, bus, meter, start_ms, end_ms, follow=bool(running))
    from gateway.cli.backfill_alone import backfill_alone

    return asyncio.run(backfill_alone(args.config, cfg, bus, meter, start_ms, end_ms))


def _file(
    args: argparse.Namespace,
    cfg: Any,
    bus: Any,
    meter: Any,
    start_ms: int,
    end_ms: int,
    *,
    follow: bool,
) -> int:
    from gateway.buffer import BufferError
    from gateway.gaps import GapCause, file_gap, read_gaps
    from gateway.gaps.ledger import FILED_SCAN_S

    record = manual_gap(*reader_for(args.config, cfg, bus, meter), bus, start_ms, end_ms)
    path = cfg.buffer_path()
    try:
        file_gap(path, record)
    except BufferError as exc:
        print(f"metergw backfill: {exc}", file=sys.stderr)
        return EXIT_FAILED
    who = "the running daemon" if follow else "the daemon (its status API is off)"
    print(
        f"filed backfill {record.id} ({GapCause.MANUAL.value}) for {who}: it starts within "
        f"{FILED_SCAN_S:.0f} s, or at the daemon's next start; `metergw status` shows it",
        flush=True,
    )
    if not follow or args.no_wait:
        return EXIT_OK
    progress = Progress(record.id)
    try:
        while True:
            rows = {g.id: g for g in read_gaps(path, since_ms=record.updated_ms)}
            current = rows.get(record.id, record)
            progress.show(current.to_json())
            if not current.state.active:
                break
            time.sleep(FOLLOW_EVERY_S)
    except KeyboardInterrupt:
        progress.close()
        print("stopped following; the daemon goes on with the backfill", file=sys.stderr)
        return EXIT_OK
    except BufferError as exc:
        progress.close()
        print(f"metergw backfill: {exc}", file=sys.stderr)
        return EXIT_FAILED
    progress.close()
    print(f"{current.state.value}: {current.reason}")
    return EXIT_OK


def reader_for(config_path: str, cfg: Any, bus: Any, meter: Any) -> tuple[Any, Any]:
    """The bus's reader (not opened: no I/O) and the meter as the scheduler runs it."""
    from gateway.config.loader import profile_dirs_for
    from gateway.scheduler.links import build_reader
    from gateway.scheduler.meters import build_meters

    reader = build_reader(bus, profile_dirs=profile_dirs_for(config_path))
    runs = build_meters(bus, cfg.poll_groups, cfg.gateway.timezone)
    return reader, next(m for m in runs if m.meter_id == meter.meter_id)


def manual_gap(reader: Any, run: Any, bus: Any, start_ms: int, end_ms: int) -> Any:
    """The ledger row of a backfill asked for by hand (through the meter's drift when it
    was measured)."""
    from gateway.gaps import GapCause
    from gateway.scheduler.gapstart import open_gap

    return open_gap(
        reader,
        run,
        bus.name,
        GapCause.MANUAL,
        start_ms,
        end_ms,
        drift_before_ms=run.drift_ms,
        gap_id=f"{run.meter_id}@{start_ms}:manual",
    )
