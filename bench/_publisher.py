"""The publisher process of bench/pipeline.py: numbered concentrator batches at QoS 1.

Run as ``python bench/_publisher.py PORT FIRST COUNT RATE [options]``; prints one
JSON line with how many messages were sent and acknowledged. ``RATE`` 0 means as
fast as QoS 1 allows (payloads are built beforehand so that publishing is what
is measured). ``--meters``/``--points`` shape a message (25 x 4 = 100 readings by
default; 1 x 1 for one reading per message). ``--hostile-every N`` publishes one
hostile message after every N - 1 valid ones, on a concentrator of its own
(``gw`` "hostile") so that its ``seq`` cannot touch the valid stream's.
"""

from __future__ import annotations

import argparse
import itertools
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
HOSTILE_TOPIC = "meters/v1/hostile/readings"
METERS, POINTS = 25, 4
PER_MSG = METERS * POINTS
POPULATION = 10_000
"""Distinct meters: a realistic fleet (new series are costly for a TSDB; readings are not)."""
OUTSTANDING = 20_000
"""Published messages not yet acknowledged, at most (below paho's 65,535 packet ids)."""
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOSTILE_ADDR = "999999999999"
"""The meter address of every reading in a hostile message: outside the valid fleet."""


def stamp(seq: int) -> str:
    """The batch and reading time of message ``seq``: ``T0 + seq`` seconds."""
    return (T0 + timedelta(seconds=seq)).isoformat().replace("+00:00", "Z")


def meter_addr(seq: int, m: int, meters: int = METERS) -> str:
    """The address of the ``m``-th meter of message ``seq``."""
    return f"{(seq * meters + m) % POPULATION:012d}"


def concentrator_message(seq: int, meters: int = METERS, points: int = POINTS) -> bytes:
    """Message ``seq``: ``meters`` meters of the fleet, each with ``points`` values, stamped
    ``T0 + seq`` seconds, so every (meter, key, time) is unique across the run."""
    ts = stamp(seq)
    readings = [
        {
            "meter": {"addr": meter_addr(seq, m, meters), "proto": "dlt645-2007"},
            "ts": ts,
            "points": [
                {"key": KEYS[p], "v": round(1000 + seq / 100 + p, 2), "u": "kWh"}
                for p in range(points)
            ],
        }
        for m in range(meters)
    ]
    body = {"schema": "metergw.readings/1", "gw": "c1", "seq": seq, "ts": ts, "readings": readings}
    return orjson.dumps(body)


def _hostile_batch(seq: int, ts: str, value: Any = 1.5, reading_ts: str | None = None) -> Any:
    return {
        "schema": "metergw.readings/1",
        "gw": "hostile",
        "seq": seq,
        "ts": ts,
        "readings": [
            {
                "meter": {"addr": HOSTILE_ADDR, "proto": "dlt645-2007"},
                "ts": reading_ts or ts,
                "points": [{"key": KEYS[0], "v": value, "u": "kWh"}],
            }
        ],
    }


def hostile_message(n: int) -> bytes:
    """The ``n``-th hostile message: garbage, huge numbers, bad timestamps, wrong types.

    Kinds from issue #12's findings. The decimal that expands on formatting is
    ``1e999999`` (a megabyte), not the issue's ``1e999999999`` (a gigabyte per
    message): a bench must not take a shared machine's memory.
    """
    ts = stamp(n)
    kinds: list[Any] = [
        b"\x00\xffnot json at all {",
        b'{"schema": "metergw.readings/1", "gw": "hostile", "seq": 1, "readings": [',
        _hostile_batch(10**30, ts),  # seq beyond SQLite's INTEGER
        _hostile_batch(n, ts, value="9E+999999999999999999"),
        _hostile_batch(n, ts, value="1e999999"),
        _hostile_batch(n, ts, value=1e308),
        _hostile_batch(n, ts, reading_ts="0001-01-01T00:00:00Z"),
        _hostile_batch(n, ts, reading_ts="1969-12-31T23:59:59Z"),
        _hostile_batch(n, ts, reading_ts="9999-12-31T23:59:59Z"),
        {**_hostile_batch(n, ts), "seq": "seventeen"},
        _hostile_batch(n, ts, value=[1, 2, 3]),
        {**_hostile_batch(n, ts), "readings": {"meter": None}},
        b"[" * 5000 + b"]" * 5000,
        {**_hostile_batch(n, ts), "gw": "x" * 100_000},
    ]
    kind = kinds[n % len(kinds)]
    return kind if isinstance(kind, bytes) else json.dumps(kind).encode()  # big ints too


def messages(
    first: int, count: int, meters: int, points: int, hostile_every: int, seq_step: int = 1
) -> Iterator[tuple[str, bytes]]:
    """(topic, payload) in publishing order: ``count`` valid messages, hostile ones between.

    ``seq_step`` > 1 publishes every n-th ``seq`` only, as a concentrator behind a
    lossy link would: the gateway records a gap event for each hole.
    """
    hostile = itertools.count(1)
    for i, seq in enumerate(range(first, first + count * seq_step, seq_step)):
        if hostile_every and i % hostile_every == hostile_every - 1:
            yield HOSTILE_TOPIC, hostile_message(next(hostile))
        yield TOPIC, concentrator_message(seq, meters, points)


def publish(args: argparse.Namespace) -> None:
    """Publish the messages at QoS 1; print how many were sent and acknowledged."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    payloads = messages(
        args.first, args.count, args.meters, args.points, args.hostile_every, args.seq_step
    )
    if not args.rate:  # unthrottled runs measure publishing: build the payloads beforehand
        payloads = iter(list(payloads))
    acked = 0
    lock = threading.Lock()
    # paho keeps unacknowledged QoS 1 messages in a dict keyed by packet id, which wraps
    # at 65535: with more than that outstanding, a new message silently replaces a queued
    # one (paho.mqtt.python issue #377). Unthrottled, this publisher used to queue
    # 100,000 messages at once and lose some: phase a "stalled" waiting for them.
    outstanding = threading.BoundedSemaphore(OUTSTANDING)

    def on_publish(*_: Any) -> None:
        nonlocal acked
        with lock:
            acked += 1
        outstanding.release()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    c.connect("127.0.0.1", args.port)
    c.loop_start()
    started = time.monotonic()
    sent = valid = 0
    for topic, p in payloads:
        while not outstanding.acquire(timeout=1.0):
            if stop:
                break
        if stop:
            break
        info = c.publish(args.topic or topic, p, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SystemExit(f"publish refused by paho: {mqtt.error_string(info.rc)}")
        sent += 1
        valid += topic == TOPIC
        if args.rate:
            delay = started + sent / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    deadline = time.monotonic() + 120
    while acked < sent and time.monotonic() < deadline:
        time.sleep(0.01)
    c.disconnect()
    c.loop_stop()
    # CLOCK_MONOTONIC is one clock for every process on the machine: the bench
    # measures from ``started`` (payloads built, first publish) rather than from
    # launching this process. ``acked`` counts valid and hostile messages; when it
    # equals ``sent``, every valid message was acknowledged.
    result = {"sent": sent, "valid_sent": valid, "acked": acked, "started": started}
    seconds = time.monotonic() - started
    print(json.dumps({**result, "seconds": seconds, "cpu_s": time.process_time()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("first", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("rate", type=float, help="messages/s, 0: as fast as QoS 1 allows")
    parser.add_argument("--meters", type=int, default=METERS)
    parser.add_argument("--points", type=int, default=POINTS)
    parser.add_argument("--hostile-every", type=int, default=0)
    parser.add_argument("--seq-step", type=int, default=1, help="publish every n-th seq")
    parser.add_argument("--topic", help="publish everything on this topic instead")
    publish(parser.parse_args())


if __name__ == "__main__":
    main()
