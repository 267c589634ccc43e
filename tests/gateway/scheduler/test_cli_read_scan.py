"""``metergw read`` and ``metergw scan`` as a user runs them, against the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import check_config, parse_config
from protocols.modbus_profile import decode_value, encode_value, resolve_profile
from simulator import Dlt645Bus, ModbusServer, SimClock, SimMeter
from tests.gateway.scheduler.conftest import MemoryAcceptor, running, until

A1, A3 = "000000000001", "000000000003"


async def metergw(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.asyncio
async def test_read_dlt645_json_table_and_timeout() -> None:
    clock = SimClock(speed=0)
    meters = [SimMeter(A1, seed=1, clock=clock), SimMeter(A3, seed=3, clock=clock)]
    async with Dlt645Bus(meters) as sim:
        path = await sim.start_pty()
        code, out, err = await metergw(
            "read", "--serial", path, "--addr", A3, "--di", "0001FF00", "--json", "--timeout", "0.5"
        )
        assert code == 0, err
        doc = json.loads(out)
        assert doc["meter"] == A3
        assert doc["link"] == path
        values = [Decimal(v["value"]) for v in doc["values"]]
        assert values == meters[1].last_served[0x0001FF00]
        assert doc["values"][0]["key"] == "energy_import_total_kwh"
        code, out, err = await metergw(
            "read", "--serial", path, "--addr", A1, "--di", "voltage_l1_v", "--di", "04000102"
        )
        assert code == 0, err
        assert "voltage_l1_v" in out
        assert str(meters[0].value("voltage_l1_v")) in out
        assert " V" in out
        assert "time" in out
        meters[0].set_fault("no_answer")
        code, out, err = await metergw(
            "read", "--serial", path, "--addr", A1, "--di", "00010000", "--timeout", "0.2"
        )
        assert code == 1
        assert out == ""
        assert A1 in err
        assert path in err
        assert "no reply" in err
        code, _, err = await metergw("read", "--serial", path, "--addr", A3, "--di", "0001FF")
        assert code == 2
        assert "0001FF" in err


@pytest.mark.asyncio
async def test_read_modbus_tcp_profile() -> None:
    meter = SimMeter("1", seed=5, clock=SimClock(speed=0))
    profile = resolve_profile("sdm630")
    async with ModbusServer("sdm630", {4: meter}) as srv:
        port = await srv.start_tcp("127.0.0.1", 0)
        code, out, err = await metergw(
            "read", "--protocol", "modbus-tcp", "--tcp", f"127.0.0.1:{port}",
            "--unit", "4", "--profile", "sdm630", "--json",
        )  # fmt: skip
        assert code == 0, err
        got = {v["key"]: Decimal(v["value"]) for v in json.loads(out)["values"]}
        assert got == {
            s.key: decode_value(s, encode_value(s, meter.value(s.key))) for s in profile.registers
        }
        assert srv.request_counts[4] < len(profile.registers)  # merged
        code, _, err = await metergw(
            "read", "--protocol", "modbus-tcp", "--tcp", f"127.0.0.1:{port}",
            "--unit", "9", "--profile", "sdm630", "--timeout", "0.3",
        )  # fmt: skip
        assert code == 1
        assert "unit 9" in err
        assert f"127.0.0.1:{port}" in err


ENERGY_KEYS = [
    "energy_import_total_kwh", "energy_import_t1_kwh", "energy_import_t2_kwh",
    "energy_import_t3_kwh", "energy_import_t4_kwh", "energy_export_total_kwh",
]  # fmt: skip


@pytest.mark.asyncio
async def test_scan_one_meter_by_read_address() -> None:
    async with Dlt645Bus([SimMeter(A3, seed=3, clock=SimClock(speed=0))]) as one:
        path = await one.start_pty()
        code, out, err = await metergw("scan", "--serial", path)
        assert code == 0, err
        doc = tomllib.loads(out)
        assert doc["buses"][0]["serial"]["port"] == path
        assert doc["buses"][0]["meters"] == [{"address": A3, "poll": ["energy", "instant"]}]
        assert doc["poll_groups"]["energy"] == {"interval": "15m", "quantities": ENERGY_KEYS}
        assert err.splitlines() == [
            f"found meter {A3} on {path}",
            f"scanning {path}: 1/1 (100%), 1 found",
            f"reading what meter {A3} has",
        ]


@pytest.mark.asyncio
async def test_scan_finds_several_meters_and_its_snippet_runs(tmp_path: Path) -> None:
    clock = SimClock(speed=0)
    addresses = [f"{n:012d}" for n in (2, 5, 17)]
    meters = [SimMeter(a, seed=n, clock=clock) for n, a in enumerate(addresses)]
    async with Dlt645Bus(meters) as line:
        port = await line.start_tcp("127.0.0.1", 0)
        link = f"127.0.0.1:{port}"
        # read-address cannot tell several meters apart: say so, and what to do.
        code, out, _ = await metergw("scan", "--tcp", link)
        assert code == 1
        assert "give --addresses" in out
        code, out, err = await metergw(
            "scan", "--tcp", link, "--addresses", "000000000001-000000000020", "--timeout", "0.2"
        )
        assert code == 0, err
        assert out.startswith(f"# 3 meter(s) found on {link}: {', '.join(addresses)}\n")
        progress = err.splitlines()
        assert [line for line in progress if line.startswith("found")] == [
            f"found meter {a} on {link}" for a in addresses
        ]
        assert [line for line in progress if line.startswith("scanning")] == [
            f"scanning {link}: {2 * n}/20 ({10 * n}%), {found} found"
            for n, found in zip(range(1, 11), (1, 1, 2, 2, 2, 2, 2, 2, 3, 3), strict=True)
        ]
        doc = tomllib.loads(out)
        assert [m["address"] for m in doc["buses"][0]["meters"]] == addresses
        assert all(m["poll"] == ["energy", "instant"] for m in doc["buses"][0]["meters"])
        assert doc["poll_groups"]["instant"]["interval"] == "1m"
        assert "voltage_l3_v" in doc["poll_groups"]["instant"]["quantities"]

        # The snippet is a config that checks clean and polls every meter.
        config = out + "\n[sinks.local]\n"
        checked = check_config(config, file=str(tmp_path / "gw.toml"), env={})
        assert checked.problems == []
        assert checked.warnings == []
        cfg = parse_config(config.replace('"15m"', '"1s"').replace('"1m"', '"1s"'))
        acceptor = MemoryAcceptor()
        groups = doc["poll_groups"].values()
        wanted = {(a, k) for a in addresses for g in groups for k in g["quantities"]}
        async with running(cfg, acceptor):
            await until(
                lambda: wanted <= {(r.meter, r.key) for r in acceptor.readings},
                10,
                "a reading of every quantity of every meter",
            )


class SinglePhaseMeter(SimMeter):
    """A meter with one phase: it refuses the three-phase blocks (an error reply, as a
    real one does) and answers their phase-1 members alone."""

    OTHER_PHASES = ("voltage_l2_v", "voltage_l3_v", "current_l2_a", "current_l3_a")

    def values(self, ts: float | None = None) -> dict[str, Decimal]:
        return {k: v for k, v in super().values(ts).items() if k not in self.OTHER_PHASES}


@pytest.mark.asyncio
async def test_scan_polls_only_what_every_meter_in_a_group_answers() -> None:
    clock = SimClock(speed=0)
    meters = [SimMeter(A1, seed=1, clock=clock), SinglePhaseMeter(A3, seed=3, clock=clock)]
    async with Dlt645Bus(meters) as line:
        port = await line.start_tcp("127.0.0.1", 0)
        code, out, err = await metergw(
            "scan", "--tcp", f"127.0.0.1:{port}", "--addresses", f"{A1},{A3}", "--timeout", "0.2"
        )
        assert code == 0, err
        doc = tomllib.loads(out)
        assert doc["poll_groups"]["instant"]["quantities"] == [
            "voltage_l1_v", "current_l1_a", "power_active_total_kw", "power_factor_total",
            "frequency_hz",
        ]  # fmt: skip
        assert [m["poll"] for m in doc["buses"][0]["meters"]] == [["energy", "instant"]] * 2
        assert check_config(out + "\n[sinks.local]\n", env={}).warnings == []


@pytest.mark.asyncio
async def test_scan_modbus_keeps_pymodbus_quiet_and_names_the_profile() -> None:
    clock = SimClock(speed=0)
    async with ModbusServer("sdm630", {2: SimMeter("2", clock=clock)}) as srv:
        port = await srv.start_tcp("127.0.0.1", 0)
        link = f"127.0.0.1:{port}"
        code, out, err = await metergw(
            "scan", "--protocol", "modbus-tcp", "--tcp", link,
            "--units", "1-3", "--profile", "sdm630", "--timeout", "0.2",
        )  # fmt: skip
        assert code == 0, err
        assert err.splitlines() == [
            f"scanning {link}: 1/3 (33%), 0 found",
            f"found unit 2 on {link}",
            f"scanning {link}: 2/3 (66%), 1 found",
            f"scanning {link}: 3/3 (100%), 1 found",
            "reading unit 2 with profile 'sdm630'",
        ]  # and not one line of pymodbus's
        doc = tomllib.loads(out)
        assert doc["buses"][0]["meters"] == [
            {"unit": 2, "profile": "sdm630", "poll": ["energy", "instant"]}
        ]
        profile = resolve_profile("sdm630")
        groups = doc["poll_groups"]
        assert sorted(groups["energy"]["quantities"] + groups["instant"]["quantities"]) == sorted(
            profile.keys
        )
        assert check_config(out + "\n[sinks.local]\n", env={}).warnings == []

        # Without --profile the snippet says what to set, and still polls something.
        code, out, err = await metergw(
            "scan", "--protocol", "modbus-tcp", "--tcp", link, "--units", "2", "--timeout", "0.2"
        )
        assert code == 0, err
        doc = tomllib.loads(out)
        assert doc["buses"][0]["meters"] == [{"unit": 2, "poll": ["energy"]}]
        assert '# profile = "..."  # required' in out
        assert "profile = " not in out.replace('# profile = "..."', "")
        code, out, _ = await metergw(
            "scan", "--protocol", "modbus-tcp", "--tcp", link, "--units", "5", "--timeout", "0.2"
        )
        assert code == 1
        assert "0 unit(s) found" in out


def _stderr_on_a_terminal(args: list[str]) -> tuple[int, str]:
    master, slave = os.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode()


@pytest.mark.asyncio
async def test_scan_progress_updates_one_line_on_a_terminal() -> None:
    meters = [SimMeter(A1, seed=1, clock=SimClock(speed=0))]
    async with Dlt645Bus(meters) as line:
        port = await line.start_tcp("127.0.0.1", 0)
        args = [
            sys.executable, "-m", "gateway", "scan", "--tcp", f"127.0.0.1:{port}",
            "--addresses", "000000000001-000000000004", "--timeout", "0.2",
        ]  # fmt: skip
        code, err = await asyncio.to_thread(_stderr_on_a_terminal, args)
        assert code == 0, err
        assert "\n" not in err  # rewritten in place, then cleared
        steps = [part for part in err.split("\r\x1b[K") if part]
        assert steps[:4] == [
            f"scanning 127.0.0.1:{port}: {n}/4 ({25 * n}%), 1 found" for n in (1, 2, 3, 4)
        ]
        assert err.endswith("\r\x1b[K")
