"""``metergw report daily`` against the simulator, whose registers are the ground truth.

A meter is silent for three of its days and comes back; the gateway's backfill
reads its daily freezes and load-profile records over a pty; what it accepted
is put in a local store and the report of each whole day inside the gap is
compared with figures computed here, independently, from the simulator's own
registers. One day then loses two hours of records (an unfilled gap).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.cli import main
from gateway.forward.local import open_local
from gateway.model import EventKind, Reading
from simulator import Dlt645Bus, SimClock, SimMeter
from tests.gateway.scheduler.conftest import MemoryAcceptor, addr, energy_config, running, until

ZONE = ZoneInfo("Asia/Shanghai")
TARIFFS = ("sharp", "peak", "flat", "valley")
RATIO = Decimal("0.0001")


def store_locally(path: Path, readings: Sequence[Reading]) -> None:
    """What the local sink does with accepted readings (its schema, one transaction)."""
    conn = open_local(str(path))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT OR REPLACE INTO local_readings VALUES (?,?,?,?,?,?,?,?,?)",
        [
            (r.meter, r.key, r.ts_ms, str(r.value), r.unit, int(r.quality), r.source,
             r.received_ms, r.interval_s)
            for r in readings
        ],
    )  # fmt: skip
    conn.execute("COMMIT")
    conn.close()


def truth(meter: SimMeter, day: date) -> dict[str, object]:
    """The day's figures from the simulator's registers: its daily freezes at the two
    midnights, and its import total at each 15-minute boundary of its clock."""
    frozen = {}
    for n in range(1, meter.history_days + 1):
        record = meter.freeze(n)
        if record is not None:
            frozen[record[0]] = record[1]
    midnight = datetime.combine(day, datetime.min.time())
    first, last = frozen[midnight], frozen[midnight + timedelta(days=1)]
    energy = {"total": last["energy_import_total_kwh"] - first["energy_import_total_kwh"]}
    for n, name in enumerate(TARIFFS, start=1):
        key = f"energy_import_t{n}_kwh"
        energy[name] = last[key] - first[key]
    boundaries = [meter.local_to_sim(midnight + timedelta(minutes=15 * i)) for i in range(97)]
    totals = [Decimal(sum(meter.tariff_hundredths(ts))) / 100 for ts in boundaries]
    demands = [(b - a) * 4 for a, b in itertools.pairwise(totals)]
    peak = max(demands)
    at = midnight + timedelta(minutes=15 * (demands.index(peak) + 1))
    return {
        "meter": meter.address,
        "date": day.isoformat(),
        "energy_kwh": {k: str(v) for k, v in energy.items()},
        "max_demand_kw": str(peak),
        "max_demand_at": at.replace(tzinfo=ZONE).isoformat(),
        "load_factor": float((sum(demands) / len(demands) / peak).quantize(RATIO)),
        "valley_share": float((energy["valley"] / energy["total"]).quantize(RATIO)),
        "completeness": 1.0,
        "quality": "ok",
    }


def report(
    config: Path, meter: str, day: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    code = main(["report", "daily", "-c", str(config), "--meter", meter, "--date", day, "--json"])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.asyncio
async def test_report_daily_equals_the_simulators_registers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meter = SimMeter(addr(31), seed=31, clock=SimClock(speed=0))
    async with Dlt645Bus([meter]) as sim:
        path = await sim.start_pty()
        acc = MemoryAcceptor()
        cfg = energy_config(path, [meter], 'offline_after = 1\noffline_backoff_max = "1s"')
        async with running(cfg, acc):
            await until(lambda: bool(acc.of(meter.address)), 5, "first reading")
            meter.set_fault("no_answer")
            await until(lambda: bool(acc.kinds(EventKind.METER_OFFLINE)), 5, "offline")
            # Away until 01:00 three days after its next midnight, whatever the time of day
            # the test runs: the three days before the return lie wholly inside the gap.
            away = meter.meter_time()
            midnight = datetime.combine(away.date() + timedelta(days=1), datetime.min.time())
            meter.clock.advance((midnight - away).total_seconds() + 3 * 86_400 + 3600)
            meter.clear_faults()
            await until(lambda: bool(acc.kinds(EventKind.GAP_FILLED)), 30, "gap filled")
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[gateway]\nstate_dir = "{tmp_path}"\ntimezone = "Asia/Shanghai"\n[sinks.local]\n'
        f'[[buses]]\nname = "rs485-1"\nprotocol = "dlt645-2007"\n'
        f'serial = {{ port = "/dev/null" }}\n[[buses.meters]]\naddress = "{meter.address}"\n',
        encoding="utf-8",
    )
    store_locally(tmp_path / "local.sqlite", acc.readings)
    capsys.readouterr()  # the scheduler's log lines

    today = meter.meter_time().date()
    days = [today - timedelta(days=n) for n in (3, 2, 1)]  # whole days inside the gap
    for day in days:
        code, out, err = report(config, meter.address, day.isoformat(), capsys)
        assert code == 0, err
        assert json.loads(out) == truth(meter, day), day

    # Two hours of one day's load profile never recovered: estimated, freezes still exact.
    gap_day = days[1]
    start = datetime.combine(gap_day, datetime.min.time()).replace(tzinfo=ZONE)
    lost = (int((start + timedelta(hours=9, minutes=1)).timestamp() * 1000),
            int((start + timedelta(hours=11)).timestamp() * 1000))  # fmt: skip
    conn = open_local(str(tmp_path / "local.sqlite"))
    conn.execute("DELETE FROM local_readings WHERE ts_ms BETWEEN ? AND ?", lost)
    conn.close()
    code, out, err = report(config, meter.address, gap_day.isoformat(), capsys)
    assert code == 0, err
    got, want = json.loads(out), truth(meter, gap_day)
    assert got["energy_kwh"] == want["energy_kwh"]
    assert got["completeness"] == float((Decimal(96 - 9) / 96).quantize(RATIO))  # 09:00-11:15
    assert got["completeness"] < 1
    assert got["quality"] == "estimated"

    # The table says the same, and the meter's other days are not on the box.
    assert main(["report", "daily", "-c", str(config), "--meter", meter.address,
                 "--date", days[0].isoformat()]) == 0  # fmt: skip
    table = capsys.readouterr().out
    first = truth(meter, days[0])
    valley = first["energy_kwh"]["valley"]  # type: ignore[index]
    assert f"energy valley (kWh)     {valley}\n" in table
    assert "completeness            1.0000 (96/96 intervals)" in table
    code, out, err = report(config, meter.address, (today - timedelta(days=30)).isoformat(), capsys)
    assert code == 1
    assert "no readings of" in err
    assert out == ""


def test_bad_options_exit_2_and_name_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n[sinks.local]\n', encoding="utf-8")
    open_local(str(tmp_path / "local.sqlite")).close()
    for day in ("2026-13-01", "yesterday", "20260301"):
        code, _, err = report(config, "000000000001", day, capsys)
        assert code == 2
        assert "--date" in err
        assert day in err
    code, _, err = report(config, " ", "2026-03-01", capsys)
    assert code == 2
    assert "--meter" in err
    code, _, err = report(config, "000000000001", "2026-03-01", capsys)
    assert code == 1
    assert "no readings of 000000000001 for 2026-03-01" in err
    (tmp_path / "local.sqlite").unlink()
    config.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n', encoding="utf-8")
    code, _, err = report(config, "000000000001", "2026-03-01", capsys)
    assert code == 1
    assert f"no local store at {tmp_path}/local.sqlite ([sinks.local] is not enabled)" in err


def test_a_concentrator_meter_is_found_by_its_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.gateway.analytics.test_daily import DAY, make_day

    config = tmp_path / "gw.toml"
    config.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n[sinks.local]\n', encoding="utf-8")
    points, _ = make_day([Decimal("0.10")] * 96)
    conn = open_local(str(tmp_path / "local.sqlite"))
    for meter in (
        "dlt645-2007:000000000005",
        "dlt645-2007:000000000006",
        "dlt645-1997:000000000006",
    ):
        conn.executemany(
            "INSERT INTO local_readings VALUES (?, ?, ?, ?, 'kWh', 0, 't', 0, 900)",
            [(meter, p.key, p.ts_ms, str(p.value)) for p in points],
        )
    conn.close()
    code, out, err = report(config, "000000000005", DAY.isoformat(), capsys)
    assert code == 0, err
    got = json.loads(out)
    assert got["meter"] == "dlt645-2007:000000000005"
    assert got["energy_kwh"]["total"] == "9.60"
    assert got["max_demand_kw"] == "0.40"
    assert got["load_factor"] == 1.0
    # Two meters of one address: the full id is needed.
    code, _, err = report(config, "000000000006", DAY.isoformat(), capsys)
    assert code == 2
    assert "dlt645-1997:000000000006, dlt645-2007:000000000006" in err
    code, out, _ = report(config, "dlt645-1997:000000000006", DAY.isoformat(), capsys)
    assert code == 0
    assert json.loads(out)["quality"] == "ok"
