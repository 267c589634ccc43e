"""The publisher process of bench/pipeline.py: numbered concentrator batches at QoS 1.

Run as ``python bench/_publisher.py PORT FIRST COUNT RATE``; prints one JSON line
with how many messages were sent and acknowledged. ``RATE`` 0 means as fast as
QoS 1 allows (payloads are built beforehand so that publishing is what is measured).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.gateway.ingest.payloads import KEYS  # noqa: E402

TOPIC = "meters/v1/c1/readings"
METERS, POINTS = 25, 4
PER_MSG = METERS * POINTS
POPULATION = 10_000
"""Distinct meters: a realistic fleet (new series are costly for a TSDB; readings are not)."""
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def concentrator_message(seq: int) -> bytes:
    """Message ``seq``: METERS meters of the fleet, each with POINTS values, stamped
    ``T0 + seq`` seconds, so every (meter, key, time) is unique across the run."""
    ts = (T0 + timedelta(seconds=seq)).isoformat().replace("+00:00", "Z")
    readings = [
        {
            "meter": {"addr": f"{(seq * METERS + m) % POPULATION:012d}", "proto": "dlt645-2007"},
            "ts": ts,
            "points": [
                {"key": KEYS[p], "v": round(1000 + seq / 100 + p, 2), "u": "kWh"}
                for p in range(POINTS)
            ],
        }
        for m in range(METERS)
    ]
    body = {"schema": "metergw.readings/1", "gw": "c1", "seq": seq, "ts": ts, "readings": readings}
    return orjson.dumps(body)


def publish(host: str, port: int, first: int, count: int, rate: float) -> None:
    """Publish messages ``first..first+count-1`` at QoS 1; print how many were acknowledged."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)

    def message(s: int) -> bytes:
        return concentrator_message(s)

    # Unthrottled runs measure publishing, so build the payloads beforehand.
    payloads: Iterator[bytes] = (message(s) for s in range(first, first + count))
    if not rate:
        payloads = iter([message(s) for s in range(first, first + count)])
    acked = 0
    lock = threading.Lock()

    def on_publish(*_: Any) -> None:
        nonlocal acked
        with lock:
            acked += 1

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    c.connect(host, port)
    c.loop_start()
    started = time.monotonic()
    sent = 0
    for p in payloads:
        if stop:
            break
        c.publish(TOPIC, p, qos=1)
        sent += 1
        if rate:
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    deadline = time.monotonic() + 120
    while acked < sent and time.monotonic() < deadline:
        time.sleep(0.01)
    c.disconnect()
    c.loop_stop()
    # CLOCK_MONOTONIC is one clock for every process on the machine: the bench
    # measures from ``started`` (payloads built, first publish) rather than from
    # launching this process.
    result = {"sent": sent, "acked": acked, "started": started}
    print(json.dumps({**result, "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    port, first, count, rate = sys.argv[1:5]
    publish("127.0.0.1", int(port), int(first), int(count), float(rate))
