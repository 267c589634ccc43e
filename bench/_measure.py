"""What the benchmarks measure about processes and the machine, in one place.

CPU and peak memory come from ``/proc`` (no extra dependency); metrics are
scraped from a daemon's ``/metrics`` with prometheus_client's own parser.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

_TICK = os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    """The machine a result was measured on: cores, Python, platform, SQLite."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll ``pred()`` until true; return the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic()


def scrape(url: str, timeout: float = 5.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``url`` (a ``/metrics`` page): (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        text = r.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(
    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float],
    name: str,
    **labels: str,
) -> float | None:
    """Sum of ``name``'s samples whose labels include ``labels``; None if it has none."""
    values = [
        v
        for (n, lbl), v in samples.items()
        if n == name and all(dict(lbl).get(k) == want for k, want in labels.items())
    ]
    return sum(values) if values else None
