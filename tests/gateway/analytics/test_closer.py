"""The daily close: when each zone's day closes, what is submitted, the catch-up after a
start, and the daemon storing a day's figures through its write path."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.analytics import DERIVED_KEYS, DailyCloser, compute_daily, daily_closer
from gateway.buffer import WriteJob
from gateway.config import Config, parse_config
from gateway.forward.local import open_local
from gateway.model import Quality, reading_of
from tests.gateway.analytics.test_daily import DAY, SHANGHAI, make_day

BERLIN = ZoneInfo("Europe/Berlin")
START = (Decimal("100.00"), Decimal("200.00"), Decimal("300.00"), Decimal("400.00"))


class Jobs:
    """The write path's interface, kept in a list; every job commits at once."""

    def __init__(self) -> None:
        self.jobs: list[WriteJob] = []

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        self.jobs.append(job)
        fut: asyncio.Future[WriteJob] = asyncio.get_running_loop().create_future()
        fut.set_result(job)
        return fut


def config(tmp_path: Path, local: bool = True) -> Config:
    return parse_config(
        f'[gateway]\nstate_dir = "{tmp_path}"\ntimezone = "Asia/Shanghai"\n'
        + ("[sinks.local]\n" if local else "")
        + '[poll_groups.e]\ninterval = "60s"\nquantities = ["energy_import_total_kwh"]\n'
        '[[buses]]\nname = "b"\nprotocol = "dlt645-2007"\nserial = { port = "/dev/null" }\n'
        '[[buses.meters]]\nname = "sh"\naddress = "000000000001"\npoll = ["e"]\n'
        '[[buses.meters]]\nname = "be"\naddress = "000000000002"\npoll = ["e"]\n'
        'timezone = "Europe/Berlin"\n'
    )


def fill(
    tmp_path: Path, meter: str, day: date, zone: ZoneInfo, start: Sequence[Decimal] = START
) -> list[Decimal]:
    """A day of 24.75 kWh (a 4 kW peak, boundary 40 missing) in the local store; returns
    the tariff registers at its end."""
    energies = [Decimal("0.25")] * 96
    energies[30] = Decimal("1.00")
    points, end = make_day(energies, day=day, zone=zone, keep=lambda i: i != 40, start=start)
    conn = open_local(str(tmp_path / "local.sqlite"))
    conn.executemany(
        "INSERT OR REPLACE INTO local_readings VALUES (?, ?, ?, ?, 'kWh', 2, 'b', 0, NULL)",
        [(meter, p.key, p.ts_ms, str(p.value)) for p in points],
    )
    conn.close()
    return end


def at(day: date, hh: int, mm: int, zone: ZoneInfo) -> float:
    return (
        datetime.combine(day, datetime.min.time())
        .replace(hour=hh, minute=mm, tzinfo=zone)
        .timestamp()
    )


@pytest.mark.asyncio
async def test_each_zone_closes_its_day_after_its_midnight_and_the_margin(
    tmp_path: Path,
) -> None:
    fill(tmp_path, "sh", DAY, SHANGHAI)
    fill(tmp_path, "be", DAY, BERLIN)
    cfg = config(tmp_path)
    now = [at(DAY, 23, 0, SHANGHAI)]
    jobs = Jobs()
    closer = DailyCloser(lambda: cfg, jobs, margin_s=300, now=lambda: now[0])
    assert await closer.close_due() == 0  # nothing of the day before is stored
    next_day = DAY + timedelta(days=1)
    assert closer.next_wake() == at(next_day, 0, 5, SHANGHAI)
    now[0] = at(next_day, 0, 4, SHANGHAI)
    assert await closer.close_due() == 0  # the margin: freezes land first
    now[0] = at(next_day, 0, 5, SHANGHAI)
    assert await closer.close_due() == 1
    (job,) = jobs.jobs
    readings = [reading_of(values) for values in job.rows]
    assert {r.meter for r in readings} == {"sh"}
    assert {r.key for r in readings} == set(DERIVED_KEYS)
    want = compute_daily("sh", DAY, SHANGHAI, make_day(
        [Decimal("0.25")] * 30 + [Decimal("1.00")] + [Decimal("0.25")] * 65,
        keep=lambda i: i != 40)[0])  # fmt: skip
    values = {r.key: r.value for r in readings}
    assert values["daily_max_demand_kw"] == want.max_demand_kw == Decimal("4.00")
    assert values["daily_completeness"] == Decimal("0.9792")  # 94 of 96 intervals
    assert values["daily_energy_import_total_kwh"] == Decimal("24.75")
    assert all(r.quality == Quality.ESTIMATED for r in readings)
    assert all(r.ts_ms == want.start_ms for r in readings)
    assert await closer.close_due() == 0  # closed once
    # Berlin (UTC+1 in March) closes seven hours later.
    assert closer.next_wake() == at(next_day, 0, 5, BERLIN)
    now[0] = at(next_day, 0, 5, BERLIN)
    assert await closer.close_due() == 1
    assert {r[0] for r in jobs.jobs[1].rows} == {"be"}


@pytest.mark.asyncio
async def test_after_a_start_a_missing_yesterday_is_caught_up_once(tmp_path: Path) -> None:
    fill(tmp_path, "sh", DAY, SHANGHAI)
    cfg = config(tmp_path)
    jobs = Jobs()
    now = at(DAY + timedelta(days=1), 9, 0, SHANGHAI)
    closer = DailyCloser(lambda: cfg, jobs, now=lambda: now)
    assert await closer.close_due(catch_up=True) == 1
    conn = open_local(str(tmp_path / "local.sqlite"))
    conn.executemany(
        "INSERT INTO local_readings VALUES (?, ?, ?, ?, '', 1, 'analytics', 0, 86400)",
        [(r[0], r[1], r[4], r[2]) for r in jobs.jobs[0].rows],
    )
    conn.close()
    again = DailyCloser(lambda: cfg, jobs, now=lambda: now)
    assert await again.close_due(catch_up=True) == 0


def test_without_a_local_store_there_is_no_closer(tmp_path: Path) -> None:
    assert daily_closer(lambda: config(tmp_path, local=False), Jobs()) is None
    assert daily_closer(lambda: config(tmp_path), Jobs()) is not None


def test_the_daemon_stores_yesterdays_figures_through_its_write_path(tmp_path: Path) -> None:
    # The day the daemon closes at start is yesterday, or the day before within the margin
    # after a midnight: both are there, alike.
    today = datetime.now(SHANGHAI).date()
    end = fill(tmp_path, "000000000001", today - timedelta(days=2), SHANGHAI)
    fill(tmp_path, "000000000001", today - timedelta(days=1), SHANGHAI, start=end)
    f = tmp_path / "gw.toml"
    f.write_text(
        f'[gateway]\nstate_dir = "{tmp_path}"\ntimezone = "Asia/Shanghai"\n[sinks.local]\n'
        'flush_interval = "0.1s"\n[http]\nport = 0\n',
        encoding="utf-8",
    )
    # A concentrator meter: its id is found in the store, its zone is the gateway's.
    conn = open_local(str(tmp_path / "local.sqlite"))
    conn.execute("UPDATE local_readings SET meter = 'dlt645-2007:000000000001'")
    conn.close()
    text = f.read_text() + ('[ingest]\nbroker = { url = "mqtt://127.0.0.1:1" }\n')
    f.write_text(text, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(f)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        rows: list[tuple[str, str, int]] = []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ro = open_local(str(tmp_path / "local.sqlite"), readonly=True)
                rows = ro.execute(
                    "SELECT key, value, quality FROM local_readings WHERE source = 'analytics'"
                ).fetchall()
                ro.close()
            except sqlite3.Error:
                rows = []
            if len(rows) == len(DERIVED_KEYS):
                break
            time.sleep(0.1)  # polling the store with a deadline
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert len(rows) == len(DERIVED_KEYS), err[-3000:]
    values = {k: v for k, v, _ in rows}
    assert values["daily_energy_import_total_kwh"] == "24.75"
    assert all(q & Quality.ESTIMATED for _, _, q in rows)
