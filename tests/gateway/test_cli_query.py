"""``metergw query``: time zones, CSV, and a reader that stops early."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.forward.local import open_local

METER = "dlt645-2007:000000000001"
ROWS = 3000  # about 200 KiB of table: more than a pipe holds, so `head -1` closes it on us


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, int]:
    """A config whose local store (under a state_dir relative to the file) holds
    ROWS readings, one a second up to a minute ago; returns (file, newest ts_ms)."""
    f = tmp_path / "site" / "gw.toml"
    f.parent.mkdir()
    f.write_text('[gateway]\nstate_dir = "state"\n[sinks.local]\n', encoding="utf-8")
    newest = time.time_ns() // 1_000_000 - 60_000
    conn = open_local(str(f.parent / "state" / "local.sqlite"))
    conn.execute("BEGIN")  # one commit, not one fsync per row
    conn.executemany(
        "INSERT INTO local_readings VALUES (?, ?, ?, ?, ?, 0, 'poll', ?, NULL)",
        [
            (METER, "energy_import_total_kwh", newest - i * 1000, f"{1000 + i}.5", "kWh", newest)
            for i in range(ROWS)
        ],
    )
    conn.execute("COMMIT")
    conn.close()
    return f, newest


def metergw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd, check=False,
    )  # fmt: skip


def test_csv_has_a_header_and_local_times(config: tuple[Path, int], tmp_path: Path) -> None:
    f, newest = config
    # Run from elsewhere: the store is found relative to the config file.
    out = metergw("query", "-c", str(f), "--meter", "000000000001", "--since", "2h", "--csv",
                  "--tz", "Asia/Shanghai", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == ROWS
    assert list(rows[0]) == ["time", "ts_ms", "meter", "key", "value", "unit", "quality", "source"]
    last = rows[-1]
    assert last["ts_ms"] == str(newest)
    assert last["meter"] == METER
    assert last["value"] == "1000.5"
    assert last["quality"] == "ok"
    when = datetime.fromisoformat(last["time"])
    assert when.utcoffset() is not None
    assert when.utcoffset().total_seconds() == 8 * 3600  # type: ignore[union-attr]
    assert when.timestamp() * 1000 == newest


def test_table_shows_the_zone_it_uses(config: tuple[Path, int], tmp_path: Path) -> None:
    f, newest = config
    args = ("query", "-c", str(f), "--meter", "000000000001", "--since", "2h")
    utc = metergw(*args, cwd=tmp_path)
    local = metergw(*args, "--tz", "Asia/Shanghai", cwd=tmp_path)
    assert utc.returncode == local.returncode == 0, utc.stderr + local.stderr
    assert utc.stdout.splitlines()[0].startswith("time (UTC) ")
    assert local.stdout.splitlines()[0].startswith("time (Asia/Shanghai) ")
    shown = datetime.fromtimestamp(newest / 1000, ZoneInfo("Asia/Shanghai"))
    assert local.stdout.splitlines()[-1].startswith(
        shown.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "  " + METER
    )
    bad = metergw(*args, "--tz", "Asia/Shangai", cwd=tmp_path)
    assert bad.returncode == 2
    assert "did you mean 'Asia/Shanghai'?" in bad.stderr


def test_a_closed_pipe_ends_quietly(config: tuple[Path, int], tmp_path: Path) -> None:
    f, _ = config
    query = subprocess.Popen(
        [sys.executable, "-m", "gateway", "query", "-c", str(f), "--meter", "000000000001",
         "--since", "2h"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    assert query.stdout is not None
    assert query.stderr is not None
    head = subprocess.run(["head", "-1"], stdin=query.stdout, capture_output=True, check=True)
    query.stdout.close()
    err = query.stderr.read().decode()
    query.stderr.close()
    assert query.wait(timeout=60) == 141  # 128 + SIGPIPE, like cat or seq
    assert err == ""
    assert head.stdout.decode().startswith("time (UTC)")
