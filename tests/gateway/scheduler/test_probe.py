"""A returning meter is noticed within one poll interval (probes within a share of the
bus), and meter events held during a failure streak are logged."""

from __future__ import annotations

import math
import time

import pytest
from structlog.testing import capture_logs

from gateway.health import BusHealth, MeterHealth, ProbeBudget
from gateway.model import EventKind
from simulator import Dlt645Bus, SimClock, SimMeter
from tests.gateway.scheduler.conftest import MemoryAcceptor, addr, dlt_config, running, until

TWO_S = """
[poll_groups.energy]
interval = "2s"
quantities = ["energy_import_total_kwh"]
"""


def test_the_probe_budget_holds_probes_to_their_share_of_the_bus() -> None:
    budget = ProbeBudget(share=0.1, cost_s=0.5)
    assert budget.wait_s(100.0) == 0.0  # a full bucket at start: 6 s of probes saved up
    budget.spend(6.0, 100.0)
    assert budget.wait_s(100.0) == pytest.approx(5.0)  # 0.5 s of probe time takes 5 s
    assert budget.wait_s(105.0) == 0.0
    spent = 0.0
    now = 105.0
    for _ in range(100):  # probe whenever allowed, for 100 s of bus time
        now += budget.wait_s(now)
        budget.spend(0.5, now)
        spent += 0.5
    assert spent / (now - 100.0) <= 0.1 + 6.5 / (now - 100.0)
    assert ProbeBudget(share=0.0, cost_s=0.5).wait_s(0.0) == math.inf


@pytest.mark.asyncio
async def test_a_returning_meter_is_polled_within_one_interval_despite_its_backoff() -> None:
    meter = SimMeter(addr(41), seed=41, clock=SimClock())
    async with Dlt645Bus([meter]) as sim:
        cfg = dlt_config(
            await sim.start_pty(),
            [meter.address],
            groups=TWO_S,
            poll=["energy"],
            bus_extra='offline_after = 1\noffline_backoff_max = "300s"\nprobe_share = 0.2',
        )
        acc = MemoryAcceptor()
        async with running(cfg, acc) as sched:
            await until(lambda: bool(acc.of(meter.address)), 5, "first reading")
            meter.set_fault("no_answer")
            health = sched.buses[0].meters[0].health
            await until(lambda: health.misses >= 4, 20, "four missed polls")
            # Its full poll has backed off (2, 4, 8, 16 s...): well past one interval.
            assert health.retry_at - time.time() > 3.0
            before = len(acc.of(meter.address))
            meter.clear_faults()
            back = time.time()
            await until(lambda: len(acc.of(meter.address)) > before, 2.0 + 1.0, "a reading")
            took = time.time() - back
    assert took <= 2.0 + 0.5, took
    assert acc.kinds(EventKind.METER_ONLINE)


def test_held_meter_events_are_logged_when_held_and_when_released() -> None:
    bus = BusHealth("rs485-1")
    m1 = MeterHealth("m1", suspect_after=1, offline_after=2)
    with capture_logs() as logs:
        failed = m1.failure(1000, 1.0, "no reply")
        now, fault = bus.on_failure(
            "m1", failed.events, 1000, expected=["m1", "m2", "m3"], error="no reply"
        )
        assert now == []
        assert not fault
        released = bus.on_success("m2", [], 2000)
    assert [e.kind for e in released] == [EventKind.METER_SUSPECT]
    events = [(entry["event"], entry.get("meter")) for entry in logs]
    assert ("meter_event_held", "m1") in events
    assert ("meter_suspect", "m1") in events
    held = next(e for e in logs if e["event"] == "meter_suspect")
    assert held["held"] is True
    assert held["reason"] == "no reply"


def test_meter_events_folded_into_a_bus_fault_are_logged() -> None:
    bus = BusHealth("rs485-1")
    with capture_logs() as logs:
        for i, name in enumerate(("m1", "m2")):
            m = MeterHealth(name, suspect_after=1)
            events, fault = bus.on_failure(
                name, m.failure(1000 + i, 1.0, "x").events, 1000, expected=["m1", "m2"], error="x"
            )
    assert fault
    assert [e.kind for e in events] == [EventKind.BUS_FAULT]
    folded = [e for e in logs if e["event"] == "meter_events_folded_into_bus_fault"]
    assert folded
    assert folded[0]["events"] == ["meter_suspect:m1", "meter_suspect:m2"]
