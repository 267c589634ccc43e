"""The demo's live view fits its terminal and shows what is wrong first.

Rendered from a ``/status`` document the way a terminal of a given size
shows it: what rich ``Live`` crops past the last line is never seen.
"""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from gateway.demo.liveview import LiveView

NOW_MS = 1_800_000_000_000
"""The document's own clock: ages are relative to it, not to when the test runs."""
FOOTER = "Ctrl-C stops the demo"
NO_REPLY = "no reply to DI 02010100 after 2 attempts of 0.5 s"


def _meter(n: int, state: str = "online", misses: int = 0) -> dict[str, Any]:
    meter = f"{n:012d}"
    return {
        "meter": meter,
        "bus": "rs485-1",
        "protocol": "dlt645-2007",
        "state": state,
        "misses": misses,
        "last_error": f"meter {meter} on /dev/ttyUSB0: {NO_REPLY}" if misses else None,
        "last_reading_ms": NOW_MS - 4_000 - 1_000 * misses * 5,
        "readings": 40,
        "values": {
            "energy_import_total_kwh": {"v": 1000.25 + n, "u": "kWh", "q": 0},
            "power_active_total_kw": {"v": 2.5, "u": "kW", "q": 0},
            "voltage_l1_v": {"v": 230.1, "u": "V", "q": 0},
        },
    }


def _event(seq: int, kind: str, subject: str, reason: str, level: str = "info") -> dict[str, Any]:
    return {
        "seq": seq,
        "ts_ms": NOW_MS - 60_000 + seq * 1_000,
        "kind": kind,
        "level": level,
        "subject": subject,
        "reason": reason,
        "count": 1,
    }


def _silent(seq: int, kind: str, meter: str) -> dict[str, Any]:
    return _event(seq, kind, meter, f"meter {meter} on /dev/ttyUSB0: {NO_REPLY}", "warning")


def status_doc() -> dict[str, Any]:
    """Seven healthy meters, one suspect and one offline, 30 concentrator meters, 14 events."""
    meters = [_meter(n) for n in range(1, 8)]
    meters += [_meter(8, "suspect", 1), _meter(9, "offline", 3)]
    meters += [
        {
            "meter": f"dlt645-2007:{100_000 + n:012d}",
            "topic": "meters/v1/conc-7/readings",
            "state": "reporting",
            "last_reading_ms": NOW_MS - 2_000,
            "values": {"energy_import_total_kwh": {"v": 5.0, "u": "kWh", "q": 0}},
        }
        for n in range(30)
    ]
    events = [_event(n, "meter_online", f"{n:012d}", "first answer") for n in range(1, 10)]
    events += [
        _event(
            10, "meter_suspect", "000000000009", f"meter 000000000009 on x: {NO_REPLY}", "warning"
        ),
        _event(
            11, "meter_offline", "000000000009", f"meter 000000000009 on x: {NO_REPLY}", "warning"
        ),
        _event(
            12, "meter_suspect", "000000000008", f"meter 000000000008 on x: {NO_REPLY}", "warning"
        ),
        _event(13, "gap_opened", "000000000007", "no readings for 54 s", "warning"),
        _event(14, "sink_error", "influx", "HTTP 503 from http://tsdb:8428", "error"),
    ]
    return {
        "gateway": {
            "name": "substation-7",
            "version": "0.1.0",
            "now_ms": NOW_MS,
            "uptime_s": 75.0,
            "ready": True,
            "not_ready": [],
        },
        "buses": [
            {"name": "rs485-1", "protocol": "dlt645-2007", "state": "ok", "utilisation": 0.41,
             "link": "/dev/ttyUSB0", "meters": 9, "online": 7},
            {"name": "rs485-2", "protocol": "dlt645-1997", "state": "ok", "utilisation": 0.2,
             "link": "/dev/ttyUSB1", "meters": 0, "online": 0},
        ],
        "meters": meters,
        "concentrators": [
            {"topic": "meters/v1/conc-7/readings", "state": "reporting", "messages": 9,
             "readings": 270, "meters_last_message": 30, "received_ms": NOW_MS - 2_000},
        ],
        "buffer": {
            "rows": 4321,
            "bytes": 3_000_000,
            "sinks": [
                {"name": "influx", "depth": 4321, "oldest_unsent_age_s": 42.0},
                {"name": "local", "depth": 0},
            ],
            "dropped": 0,
            "quarantined": 2,
        },
        "readings_accepted": 12345,
        "ingest": {"connected": True},
        "recent": {"events": events[:-1], "errors": events[-1:]},
    }  # fmt: skip


def screen(width: int, height: int, doc: dict[str, Any] | None = None) -> list[str]:
    console = Console(width=width, height=height, record=True, color_system=None)
    console.print(LiveView(console, interactive=True).frame(doc or status_doc(), FOOTER))
    return console.export_text().splitlines()


def line_with(lines: list[str], *words: str) -> str:
    found = [line for line in lines if all(w in line for w in words)]
    assert found, f"no line with {words} in:\n" + "\n".join(lines)
    return found[0]


@pytest.mark.parametrize(("width", "height"), [(80, 24), (120, 40), (100, 30), (160, 60)])
def test_the_frame_fits_and_shows_problems_buffer_and_events(width: int, height: int) -> None:
    lines = screen(width, height)
    assert len(lines) <= height, "\n".join(lines)
    assert all(len(line) <= width for line in lines)
    # The meters with problems come first, with their state and why.
    assert "no reply" in line_with(lines, "000000000009", "offline")
    assert "1 missed" in line_with(lines, "000000000008", "suspect")
    # The buffer: what the failing sink has not delivered yet.
    line_with(lines, "influx", "4321")
    # The newest events, the error among them, and the footer last.
    line_with(lines, "Recent events")
    line_with(lines, "sink_error", "influx", "HTTP 503")
    line_with(lines, "gap_opened", "000000000007")
    line_with(lines, "meter_offline", "000000000009")
    assert lines[-1].strip() == FOOTER
    # Healthy meters fill the room left; the rest are counted.
    assert "more meters not shown" in "\n".join(lines)


def test_a_taller_terminal_shows_more_meters_and_events() -> None:
    small, tall = screen(80, 24), screen(120, 40)

    def rows(lines: list[str], word: str) -> int:
        return sum(word in line for line in lines)

    assert rows(tall, "online") > rows(small, "online")
    assert rows(tall, "meter_online") + rows(tall, "meter_suspect") > rows(
        small, "meter_online"
    ) + rows(small, "meter_suspect")


def test_a_few_meters_and_no_events_leave_the_screen_short() -> None:
    doc = status_doc()
    doc["meters"] = doc["meters"][:3]
    doc["recent"] = {}
    lines = screen(80, 24, doc)
    assert len(lines) < 24
    assert "more meters not shown" not in "\n".join(lines)
    for n in (1, 2, 3):
        line_with(lines, f"{n:012d}", "online")


def test_without_a_document_it_says_it_is_waiting() -> None:
    console = Console(width=80, height=24, record=True, color_system=None)
    console.print(LiveView(console, interactive=True).frame(None))
    assert "waiting for the gateway" in console.export_text()
