"""Where each reading of a phase ended up: counted per identity, not from the bench's waits.

A phase publishes messages ``first .. first+count-1``; every reading in them has
an identity (meter, key, ts) that maps back to one slot (bench/_publisher.py
makes them unique). The ledger counts, per slot, the samples VictoriaMetrics
lists (``/api/v1/export`` for the phase's own time range, after a flush) and
the rows still in a buffer file. A reading is *lost* when VictoriaMetrics does
not have it and no buffer will send it: in no buffer, or in one but behind the
sink's cursor (skipped). It is *undelivered* when it waits in a buffer ahead of
the cursor (the gateway was stopped before forwarding it: not lost, the next
start sends it); *listed twice* when VictoriaMetrics returns two samples for it.
Nothing here trusts a wait on sequence numbers or a difference of totals; the
cursor is read only to tell pending rows from skipped ones.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bench._publisher import POPULATION, T0
from tests.gateway.ingest.payloads import KEYS
from tests.servers import VictoriaMetricsServer

_T0_MS = int(T0.timestamp() * 1000)
_KEY = {k: i for i, k in enumerate(KEYS)}


class Ledger:
    """Per-reading counts of one phase's valid readings in the TSDB and in buffers."""

    def __init__(self, first: int, count: int, meters: int, points: int, step: int = 1) -> None:
        self.first, self.count, self.meters, self.points = first, count, meters, points
        self.step = step
        """Messages carry every ``step``-th seq from ``first`` (bench/_publisher.py --seq-step)."""
        self.expected = count * meters * points
        self.in_tsdb = bytearray(self.expected)
        self.in_buffer = bytearray(self.expected)
        """Rows ahead of the influx cursor: still to be sent."""
        self.behind_cursor = bytearray(self.expected)
        """Rows the cursor has passed (kept until pruned): sent, or skipped if not in the TSDB."""
        self.foreign_tsdb = 0
        """Samples in the phase's time range that are none of its readings."""

    def slot(self, meter: str, key: str, ts_ms: int) -> int | None:
        """The slot of reading (meter, key, ts), or None if it is not one of the phase's."""
        seq, rest = divmod(ts_ms - _T0_MS, 1000)
        n, off = divmod(seq - self.first, self.step)
        p = _KEY.get(key)
        if rest or off or p is None or p >= self.points or not 0 <= n < self.count:
            return None
        addr = meter.rsplit(":", 1)[-1]
        if not addr.isdigit():
            return None
        m = (int(addr) - seq * self.meters) % POPULATION
        if m >= self.meters:
            return None
        return (n * self.meters + m) * self.points + p

    def count_tsdb(self, vm: VictoriaMetricsServer, measurement: str = "meter_value") -> None:
        """Count the samples VictoriaMetrics lists for the phase's time range (flushed first)."""
        self.in_tsdb = bytearray(self.expected)
        self.foreign_tsdb = 0
        vm.force_flush()
        start = (_T0_MS // 1000) + self.first
        query = urllib.parse.urlencode(
            {
                "match[]": f'{{__name__="{measurement}"}}',
                "start": str(start),
                "end": str(start + self.count * self.step),
            }
        )
        counts = self.in_tsdb
        with urllib.request.urlopen(f"{vm.url}/api/v1/export?{query}", timeout=600) as r:
            for line in r:
                s = json.loads(line)
                meter, key = s["metric"].get("meter", ""), s["metric"].get("quantity", "")
                for ts in s["timestamps"]:
                    i = self.slot(meter, key, ts)
                    if i is None:
                        self.foreign_tsdb += 1
                    elif counts[i] < 255:
                        counts[i] += 1

    def count_buffer(self, path: Path) -> None:
        """Add the readings a (stopped) gateway's buffer file still holds."""
        if not path.exists():
            return
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
            row = conn.execute("SELECT seq FROM cursors WHERE sink='influx'").fetchone()
            cursor = int(row[0]) if row else 0
            rows = conn.execute("SELECT seq, meter, key, ts_ms FROM readings")
            for seq, meter, key, ts_ms in rows:
                i = self.slot(meter, key, ts_ms)
                if i is None:
                    continue
                counts = self.in_buffer if seq > cursor else self.behind_cursor
                if counts[i] < 255:
                    counts[i] += 1

    def lost_slots(self, limit: int = 100) -> list[dict[str, int]]:
        """The first ``limit`` lost readings: message seq, meter index, point index, ts."""
        out: list[dict[str, int]] = []
        for i in range(self.expected):
            if self.in_tsdb[i] or self.in_buffer[i]:
                continue
            n, rest = divmod(i, self.meters * self.points)
            seq = self.first + n * self.step
            m, p = divmod(rest, self.points)
            out.append({"seq": seq, "meter_index": m, "point": p, "ts_ms": _T0_MS + seq * 1000})
            if len(out) >= limit:
                break
        return out

    def summary(self) -> dict[str, Any]:
        """Counts of readings by where they are; ``lost`` is in neither place."""
        tsdb, buf, behind = self.in_tsdb, self.in_buffer, self.behind_cursor
        in_tsdb = self.expected - tsdb.count(0)
        only_buffer = sum(1 for i in range(self.expected) if not tsdb[i] and buf[i])
        skipped = sum(1 for i in range(self.expected) if not tsdb[i] and behind[i] and not buf[i])
        return {
            "expected": self.expected,
            "in_tsdb": in_tsdb,
            "listed_twice_by_tsdb": sum(c - 1 for c in tsdb if c > 1),
            "undelivered_in_buffer": only_buffer,
            "skipped_behind_cursor": skipped,
            "stored_twice_in_buffer": sum(
                c - 1 for c in (a + b for a, b in zip(buf, behind, strict=True)) if c > 1
            ),
            "lost": self.expected - in_tsdb - only_buffer,
            "foreign_samples_in_range": self.foreign_tsdb,
        }
