"""Scenario files, the fault timeline and the HTTP control API."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from protocols.dlt645 import read_request
from simulator import ScenarioError, load_scenario, parse_scenario
from simulator.scenario.runner import Scenario
from tests.simulator.conftest import eventually, tcp_client

SCENARIO = """
[simulation]
start = 2026-11-23T00:00:00Z
speed = 60.0
seed = 3

[control]
port = 0

[[dlt645]]
name = "dtu"
tcp = "127.0.0.1:0"
first = "000000000001"
count = 3

[[modbus]]
name = "mb"
tcp = "127.0.0.1:0"
units = [1, 2]

[[faults]]
at = 0.3
duration = 0.6
target = "000000000002"
fault = "no_answer"
"""


def test_demo_and_fleet_files_validate() -> None:
    demo = load_scenario("config/sim/demo.toml")
    assert [(b.name, b.variant.value, b.baud) for b in demo.buses.values()] == [
        ("rs485-1", "dlt645-2007", 2400),
        ("rs485-2", "dlt645-1997", 1200),
    ]
    assert sorted(demo.buses["rs485-1"].meters) == [f"{n:012d}" for n in range(1, 6)]
    assert sorted(demo.buses["rs485-2"].meters) == ["000000000011", "000000000012"]
    assert len(demo.concentrators["conc-demo"].meters) == 20
    assert demo.spec.faults[0].at == 20
    fleet = load_scenario("config/sim/fleet-2000.toml")
    assert len(fleet.meters) == 2000


def test_bad_scenarios_name_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"x\.toml: dlt645\.0\.baud"):
        parse_scenario(
            '[[dlt645]]\nname="a"\ntcp="h:1"\nmeters=["000000000001"]\nbaud=-1', "x.toml"
        )
    with pytest.raises(ScenarioError, match=r"x\.toml: dlt645\.0: .*exactly one of 'pty' or 'tcp'"):
        parse_scenario('[[dlt645]]\nname="a"\nmeters=["000000000001"]', "x.toml")
    bad_target = SCENARIO.replace('target = "000000000002"', 'target = "000000000042"')
    with pytest.raises(ScenarioError, match=r"faults\.0\.target: .*000000000042"):
        Scenario(parse_scenario(bad_target, "y.toml"))
    with pytest.raises(ScenarioError, match=r"z\.toml: cannot read"):
        load_scenario(tmp_path / "z.toml")


def test_a_bus_of_meters_without_load_profile() -> None:
    bare = SCENARIO.replace("count = 3", "count = 3\nload_profile = false")
    dtu = Scenario(parse_scenario(bare, "b.toml")).buses["dtu"]
    assert [m.keeps_load_profile for m in dtu.meters.values()] == [False] * 3
    assert all(
        m.keeps_load_profile for m in Scenario(parse_scenario(SCENARIO, "a.toml")).meters.values()
    )


def test_phases_per_bus_and_per_meter() -> None:
    three = Scenario(parse_scenario(SCENARIO, "a.toml")).buses["dtu"]
    assert {m.phases for m in three.meters.values()} == {3}
    single = SCENARIO.replace("count = 3", "count = 3\nphases = 1")
    dtu = Scenario(parse_scenario(single, "b.toml")).buses["dtu"]
    assert {m.phases for m in dtu.meters.values()} == {1}
    mixed = SCENARIO.replace("count = 3", 'count = 3\nphases = {"000000000002" = 1}')
    dtu = Scenario(parse_scenario(mixed, "c.toml")).buses["dtu"]
    assert {a: m.phases for a, m in dtu.meters.items()} == {
        "000000000001": 3,
        "000000000002": 1,
        "000000000003": 3,
    }
    stranger = SCENARIO.replace("count = 3", 'count = 3\nphases = {"000000000009" = 1}')
    with pytest.raises(ScenarioError, match=r"d\.toml: dlt645\.0: .*000000000009 are not meters"):
        parse_scenario(stranger, "d.toml")
    with pytest.raises(ScenarioError, match=r"e\.toml: dlt645\.0\.phases"):
        parse_scenario(SCENARIO.replace("count = 3", "count = 3\nphases = 2"), "e.toml")


@pytest.mark.asyncio
async def test_timeline_and_control_api() -> None:
    scenario = Scenario(parse_scenario(SCENARIO, "test.toml"))
    async with scenario:
        eps = {e.name: e for e in scenario.endpoints}
        assert {"dtu", "mb", "control"} <= set(eps)
        assert eps["dtu"].protocol == "dlt645-2007-tcp"
        client = await tcp_client(int(eps["dtu"].where.rsplit(":", 1)[1]))
        request = read_request("000000000002", 0x00010000)
        assert await client.frame(request) is not None
        # The timeline silences meter 2 from t=0.3 s for 0.6 s.
        await eventually(lambda: bool(scenario.active_faults()), what="timeline fault")
        assert await client.frame(request, 0.2) is None
        t0 = time.monotonic()
        while await client.frame(request, 0.1) is None:
            assert time.monotonic() - t0 < 3, "fault did not expire"

        base = f"http://{eps['control'].where}"
        async with aiohttp.ClientSession() as http:
            body = {"target": "dtu", "fault": "dead", "duration": 30}
            async with http.post(f"{base}/faults", json=body) as r:
                assert r.status == 201
            async with http.get(f"{base}/faults") as r:
                faults = (await r.json())["faults"]
            assert [(f["target"], f["fault"]) for f in faults] == [("dtu", "dead")]
            assert 25 < faults[0]["remaining_s"] <= 30
            assert await client.frame(read_request("000000000001", 0x00010000), 0.2) is None
            slow = {"target": "mb/2", "fault": "slow", "params": {"delay": 0.1}}
            async with http.post(f"{base}/faults", json=slow) as r:
                assert r.status == 201
            assert scenario.meters["mb/2"].fault("slow") is not None
            async with http.post(f"{base}/faults", json={"target": "nope", "fault": "dead"}) as r:
                assert r.status == 404
                assert "nope" in (await r.json())["error"]
            async with http.post(f"{base}/faults", json={"target": "dtu", "fault": "melt"}) as r:
                assert r.status == 400
            async with http.delete(f"{base}/faults") as r:
                assert r.status == 200
            async with http.get(f"{base}/faults") as r:
                assert (await r.json())["faults"] == []
        assert await client.frame(read_request("000000000001", 0x00010000)) is not None
        await client.close()
