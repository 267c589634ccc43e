"""``metersim`` as a user runs it: a real process, real endpoints, clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from protocols.dlt645 import Variant, decode_payload, parse_reply, read_request
from tests.simulator.conftest import pty_client, tcp_client


def start(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "simulator.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.asyncio
async def test_serve_dlt645_tcp_prints_endpoint_and_stops_on_sigterm() -> None:
    proc = start("serve", "dlt645", "--tcp", "127.0.0.1:0", "--meters",
                 "000000000001..000000000003")  # fmt: skip
    try:
        assert proc.stdout is not None
        name, protocol, where = proc.stdout.readline().strip().split("\t")
        assert (name, protocol) == ("dlt645", "dlt645-2007-tcp")
        client = await tcp_client(int(where.rsplit(":", 1)[1]))
        frame = await client.frame(read_request("000000000003", 0x00010000), 2.0)
        assert frame is not None
        reply = parse_reply(frame, Variant.V2007)
        assert decode_payload(0x00010000, reply.payload)[0].value > 0  # type: ignore[union-attr]
        await client.close()
    finally:
        assert stop(proc) == 0


@pytest.mark.asyncio
async def test_run_scenario_with_pty_link(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        '[[dlt645]]\nname = "line"\nvariant = "dlt645-1997"\npty = "dev/line-1"\n'
        'baud = 1200\nmeters = ["000000000011"]\n'
    )
    proc = start("run", str(scenario), cwd=tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip().split("\t")
        assert line == ["line", "dlt645-1997", "dev/line-1"]
        async with pty_client(str(tmp_path / "dev" / "line-1")) as client:
            frame = await client.frame(read_request("000000000011", 0xB611, Variant.V1997), 2.0)
            assert frame is not None
            assert frame.control == 0x81
    finally:
        assert stop(proc) == 0
    assert not (tmp_path / "dev" / "line-1").exists()


def test_bad_scenario_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text('[[modbus]]\nname = "m"\ntcp = "127.0.0.1:0"\nunits = [0]\n')
    proc = start("run", str(scenario))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert f"{scenario}: modbus.0.units.0" in err
