"""Meter and bus state machines, tick coalescing, gap arithmetic (pure logic)."""

from __future__ import annotations

import datetime

from gateway.health import (
    BusHealth,
    Gap,
    MeterHealth,
    MeterState,
    freezes_to_scan,
    meter_gap,
    meter_time_to_utc_ms,
    needs_backfill,
)
from gateway.model import EventKind
from gateway.scheduler.timing import next_tick, reschedule


def test_meter_goes_suspect_then_offline_then_back() -> None:
    h = MeterHealth("m1", suspect_after=1, offline_after=3, backoff_base=1.0, backoff_max=4.0)
    assert [e.kind for e in h.success(1000).events] == [EventKind.METER_ONLINE]
    assert [e.kind for e in h.failure(2000, 100.0, "no reply").events] == [EventKind.METER_SUSPECT]
    assert h.failure(3000, 101.0, "no reply").events == ()
    out = h.failure(4000, 102.0, "no reply")
    assert [e.kind for e in out.events] == [EventKind.METER_OFFLINE]
    assert out.events[0].reason == "no reply"
    assert h.state is MeterState.OFFLINE
    # Backoff doubles from the base up to the cap: 1, 2, 4, 4.
    delays = [h.retry_at - 102.0]
    for now in (200.0, 300.0, 400.0):
        h.failure(0, now, "no reply")
        delays.append(h.retry_at - now)
    assert delays == [1.0, 2.0, 4.0, 4.0]
    back = h.success(9000)
    assert back.returned_from_ms == 1000
    assert [e.kind for e in back.events] == [EventKind.METER_ONLINE]
    assert h.misses == 0


def test_rollback_undoes_failures_blamed_on_the_bus() -> None:
    h = MeterHealth("m1", suspect_after=1, offline_after=2)
    h.success(1)
    h.checkpoint()
    h.failure(2, 1.0, "x")
    h.failure(3, 2.0, "x")
    assert h.state is MeterState.OFFLINE
    h.rollback()
    assert (h.state, h.misses) == (MeterState.ONLINE, 0)


def test_all_meters_failing_is_one_bus_fault() -> None:
    bus = BusHealth("rs485-1")
    meters = ["a", "b", "c"]
    ev_a = MeterHealth("a").failure(1, 0.0, "t").events
    assert bus.on_failure("a", ev_a, 1, expected=meters, error="t") == ([], False)
    assert bus.on_failure("b", (), 2, expected=meters, error="t") == ([], False)
    events, fault = bus.on_failure("c", (), 3, expected=meters, error="t")
    assert fault
    assert [e.kind for e in events] == [EventKind.BUS_FAULT]
    assert events[0].detail["meter_events_suppressed"] == 1
    recovered = bus.on_success("b", (), 10)
    assert [e.kind for e in recovered] == [EventKind.BUS_RECOVERED]


def test_one_meter_failing_releases_its_events_when_another_answers() -> None:
    bus = BusHealth("rs485-1")
    ev = MeterHealth("a").failure(1, 0.0, "t").events
    assert bus.on_failure("a", ev, 1, expected=["a", "b"], error="t") == ([], False)
    released = bus.on_success("b", (), 2)
    assert [e.kind for e in released] == [EventKind.METER_SUSPECT]
    assert bus.state == "ok"


def test_link_error_is_a_bus_fault_at_once() -> None:
    bus = BusHealth("rs485-1")
    events, fault = bus.on_failure("a", (), 1, expected=["a", "b"], error="gone", link_error=True)
    assert fault
    assert events[0].kind is EventKind.BUS_FAULT


def test_ticks_align_to_the_wall_clock_and_coalesce() -> None:
    assert next_tick(900, 1000.0) == 1800.0
    assert next_tick(900, 1800.0) == 2700.0
    assert reschedule(900, 1800.0, 1805.0) == (2700.0, 0)
    # Served 3 ticks late: one late poll now, not three queued.
    assert reschedule(900, 1800.0, 1800.0 + 900 * 3 + 5) == (1800.0 + 900 * 3, 2)


def test_gap_arithmetic() -> None:
    assert needs_backfill(0, 901_000, 900)
    assert not needs_backfill(0, 899_000, 900)
    assert not needs_backfill(None, 10**9, 900)
    gap = Gap("m", 0, 3 * 86_400_000)
    assert freezes_to_scan(gap) == 4
    assert freezes_to_scan(gap, hourly=True) == 73
    assert freezes_to_scan(Gap("m", 0, 100 * 86_400_000)) == 62  # all a meter keeps
    assert freezes_to_scan(Gap("m", 0, 20 * 86_400_000), hourly=True) == 254
    assert freezes_to_scan(Gap("m", 5, 5), hourly=True) == 1
    shifted = meter_gap(gap, 1000, 5000)
    assert (shifted.start_ms, shifted.end_ms) == (1000, 3 * 86_400_000 + 5000)
    local = datetime.datetime(2026, 11, 23, 0, 0)
    assert meter_time_to_utc_ms(local, "Asia/Shanghai") == int(
        datetime.datetime(2026, 11, 22, 16, 0, tzinfo=datetime.UTC).timestamp() * 1000
    )
