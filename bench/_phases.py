"""The phases of bench/pipeline.py (see its docstring for what each measures)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bench import _ceilings as ceilings
from bench._gateway import (
    SHARED_TOPIC,
    Gateway,
    Stalled,
    buffer_state,
    clear_session,
    concentrator_mark,
    delivered,
    make_gateway,
    publisher_result,
    start_publisher,
    wait_accepted,
)
from bench._ledger import Ledger
from bench._measure import cpu_seconds, peak_rss_mb, wait_for
from tests.servers import MosquittoServer, VictoriaMetricsServer

BY_SHAPE = {1: (1, 1), 100: (25, 4)}
EVIDENCE = Path(__file__).resolve().parent / "results" / "evidence"
"""Readings per message -> (meters, points) of each message."""


def stop_all(gws: list[Gateway], broker: MosquittoServer) -> None:
    for g in gws:
        g.stop()
        clear_session(broker, g.client_id)


def stream(
    gws: list[Gateway],
    broker: MosquittoServer,
    vm: VictoriaMetricsServer,
    first: int,
    count: int,
    per_msg: int,
    hostile_every: int = 0,
) -> dict[str, Any]:
    """Publish ``count`` messages as fast as QoS 1 allows; time ingest and delivery."""
    meters, points = BY_SHAPE[per_msg]
    readings = count * per_msg
    for g in gws:
        g.start()
    try:
        for g in gws:
            wait_for(g.answering, 60, f"{g.name} to start", 0.1)

        def cpu_now() -> dict[str, float]:
            pids = {"broker": broker.pid, "tsdb": vm.pid} | {g.name: g.pid for g in gws}
            return {name: cpu_seconds(pid) for name, pid in pids.items()}

        cpu0 = cpu_now()
        pub = start_publisher(
            broker, first, count, 0, "--meters", str(meters), "--points", str(points),
            "--hostile-every", str(hostile_every),
        )  # fmt: skip
        try:
            t_ingested = wait_accepted(gws, readings, 600)
            t_done = wait_for(lambda: all(delivered(g) for g in gws), 600, "delivery", 0.05)
        except Stalled as exc:
            pub.kill()
            raise Stalled(f"{exc}; log: {gws[0].tail()}") from None
        cpu = {k: v - cpu0[k] for k, v in cpu_now().items()}
        published = publisher_result(pub)
        cpu["publisher"] = published.get("cpu_s", 0.0)
        t0 = published["started"]  # the first publish, not the publisher's start-up
        rss = max(peak_rss_mb(g.pid) for g in gws)
        seen = [g.metrics() for g in gws]
    finally:
        stop_all(gws, broker)
    ledger = Ledger(first, count, meters, points)
    ledger.count_tsdb(vm)
    for g in gws:
        ledger.count_buffer(g.db)
    keep_evidence(ledger, gws)
    return {
        "messages": count,
        "readings": readings,
        "readings_per_message": per_msg,
        "publish_s": round(published["seconds"], 2),
        "ingest_readings_per_s": round(readings / (t_ingested - t0)),
        "end_to_end_readings_per_s": round(readings / (t_done - t0)),
        "end_to_end_messages_per_s": round(count / (t_done - t0)),
        "peak_rss_mb": round(rss, 1),
        # Where the machine's cores went while the phase ran: CPU seconds per 1,000 readings
        # of each process (every one of them shares the same cores).
        "cpu_ms_per_1k_readings": {k: round(v / readings * 1e6, 1) for k, v in cpu.items()},
        "payloads_rejected": int(sum(m["rejected"] for m in seen)),
        "quarantined": int(sum(m["quarantined"] for m in seen)),
        # Sink batches answered from the rows just committed, and read back from disk.
        "sink_batches": {
            "from_memory": int(sum(m.get("reads_memory", 0) for m in seen)),
            "from_disk": int(sum(m.get("reads_disk", 0) for m in seen)),
        },
        "count": ledger.summary(),
    }


def keep_evidence(ledger: Ledger, gws: list[Gateway]) -> None:
    """A count that says readings were lost keeps what explains it, whatever --keep says:
    each gateway's buffer, config and log, and the first lost readings, under
    bench/results/evidence/. (One full run once reported 248,300 readings lost in the
    shared phase and left nothing to look at; bench/README.md.)"""
    summary = ledger.summary()
    if not summary["lost"]:
        return
    where = EVIDENCE / time.strftime("%Y%m%dT%H%M%S")
    where.mkdir(parents=True, exist_ok=True)
    for g in gws:
        for path in (g.db, g.log, g.config):
            if path.exists():
                shutil.copy2(path, where / f"{g.name}-{path.name}")
    lost = {"summary": summary, "first_lost": ledger.lost_slots()}
    (where / "lost.json").write_text(json.dumps(lost, indent=1))
    print(f"readings lost: evidence kept in {where}", flush=True)


def phase_stream(
    work: Path,
    name: str,
    broker: MosquittoServer,
    vm: VictoriaMetricsServer,
    common: dict[str, Any],
    first: int,
    count: int,
    per_msg: int,
) -> dict[str, Any]:
    """Phase a (1 reading per message) or b (100): metergw against its stage ceilings."""
    meters, points = BY_SHAPE[per_msg]
    stages = {**common, "broker_qos1": ceilings.broker_qos1(broker, count, meters, points)}
    gw = make_gateway(work, name, broker, vm)
    return ceilings.with_ceilings(stream([gw], broker, vm, first, count, per_msg), stages)


def phase_hostile(
    work: Path,
    broker: MosquittoServer,
    vm: VictoriaMetricsServer,
    common: dict[str, Any],
    first: int,
    count: int,
    all_valid: dict[str, Any] | None,
) -> dict[str, Any]:
    """Phase c: 1% hostile messages among 100-reading ones; valid rate against all-valid."""
    if not all_valid or "end_to_end_readings_per_s" not in all_valid:
        all_valid = phase_stream(work, "c-ref", broker, vm, common, first + 10 * count, count, 100)
    gw = make_gateway(work, "c", broker, vm)
    try:
        result = stream([gw], broker, vm, first, count, 100, hostile_every=100)
    except Stalled as exc:
        raise Stalled(
            f"not supported by this build: ingest stalls on hostile input ({exc})"
        ) from None
    counted = result["count"]
    exactly_once = (
        counted["in_tsdb"] == counted["expected"]
        and counted["listed_twice_by_tsdb"] == 0
        and counted["stored_twice_in_buffer"] == 0
    )
    return {
        **result,
        "hostile_messages": count // 100,
        "all_valid_end_to_end_readings_per_s": all_valid["end_to_end_readings_per_s"],
        "share_of_all_valid": round(
            result["end_to_end_readings_per_s"] / all_valid["end_to_end_readings_per_s"], 3
        ),
        "valid_readings_exactly_once": exactly_once,
    }


def phase_shared(
    work: Path, broker: MosquittoServer, vm: VictoriaMetricsServer, first: int, count: int
) -> dict[str, Any]:
    """Phase d: one gateway, then two, on one shared subscription; same messages."""
    from gateway.config import ConfigError, load_config

    one = make_gateway(work, "d1", broker, vm, topic=SHARED_TOPIC)
    try:
        load_config(one.config)
    except ConfigError as exc:
        raise Stalled(
            f"not supported by this build: config refuses {SHARED_TOPIC}: {exc}"
        ) from None
    single = stream([one], broker, vm, first, count, 100)
    pair = [make_gateway(work, f"d2{x}", broker, vm, topic=SHARED_TOPIC) for x in "ab"]
    both = stream(pair, broker, vm, first + count, count, 100)
    return {
        "one_instance": single,
        "two_instances": both,
        "ratio_two_to_one": round(
            both["end_to_end_readings_per_s"] / single["end_to_end_readings_per_s"], 3
        ),
        "cpus": os.cpu_count(),
    }


def vm_points(vm: VictoriaMetricsServer) -> int:
    """Distinct (meter, quantity, ts) of meter_value over all time: the bench's old count."""
    vm.force_flush()
    query = urllib.parse.urlencode({"match[]": '{__name__="meter_value"}'})
    seen: set[tuple[str, int]] = set()
    with urllib.request.urlopen(f"{vm.url}/api/v1/export?{query}", timeout=600) as r:
        for line in r:
            s = json.loads(line)
            key = s["metric"]["meter"] + "|" + s["metric"]["quantity"]
            seen.update((key, ts) for ts in s["timestamps"])
    return len(seen)


def phase_backlog(
    work: Path,
    broker: MosquittoServer,
    vm: VictoriaMetricsServer,
    common: dict[str, Any],
    readings: int,
    first: int,
    daemon: bool = False,
    seq_step: int = 1,
    per_msg: int = 100,
    old_stop: bool = False,
) -> dict[str, Any]:
    """TSDB down while ``readings`` are buffered, then up: the drain. Loss counted twice:
    the old way (a difference of totals after ``cursor >= readings``) and per reading.

    How the old count goes wrong: its wait assumed the buffer numbers this phase's
    readings 1..N and nothing else. Anything else in that sequence (an event, a seq a
    writer skipped) ends the wait early, the gateway is stopped with readings still
    ahead of its cursor, and they are reported lost although the buffer holds them and
    sends them at the next start. ``old_wait_ended_with`` records how many were
    waiting when it ended; ``seq_step`` > 1 (a lossy concentrator link: one gap event
    per hole) makes it happen on today's writer, plainly with ``per_msg`` 1 (one gap
    event per reading). With ``old_stop`` the phase does what the old bench did (stop
    the gateway when ``cursor >= readings`` and count), reports that count and the
    ledger's at that moment, then restarts the gateway and lets it drain.
    bench/README.md has the whole story.
    """
    gw = make_gateway(work, "s2d" if daemon else "s2", broker, vm, daemon=daemon)
    before = vm_points(vm)
    vm.stop()
    meters, points = BY_SHAPE[per_msg]
    messages = readings // per_msg
    total = messages * per_msg
    gw.start()
    try:
        wait_for(gw.answering, 60, f"{gw.name} to start", 0.1)
        pub = start_publisher(
            broker, first, messages, 0, "--seq-step", str(seq_step), "--meters", str(meters),
            "--points", str(points),
        )  # fmt: skip
        t_ingested = wait_accepted([gw], total, 900)
        t0 = publisher_result(pub)["started"]
        rss_buffered = peak_rss_mb(gw.pid)
        bytes_on_disk = sum(p.stat().st_size for p in gw.state.glob("buffer.sqlite*"))
        vm.start()
        t_up = time.monotonic()
        # Drain rate from the first confirmed write: the forwarder's backoff (up to 30 s
        # between attempts while the TSDB was down) is not the drain path's speed.
        t1 = wait_for(lambda: buffer_state(gw.db)[1] > 0, 120, "the first write", 0.01)
        old_wait: dict[str, Any] = {}
        if old_stop:
            wait_for(lambda: buffer_state(gw.db)[1] >= total, 900, "the old wait", 0.05)
            head, cursor = buffer_state(gw.db)
            gw.stop()
            old_ledger = Ledger(first, messages, meters, points, seq_step)
            old_ledger.count_tsdb(vm)
            old_ledger.count_buffer(gw.db)
            old_wait.update(
                head=head,
                cursor=cursor,
                undelivered=head - cursor,
                lost_by_old_count=total - (vm_points(vm) - before),
                count=old_ledger.summary(),
            )
            gw.start()

        def drained() -> bool:
            head, cursor = buffer_state(gw.db)
            if cursor >= total and not old_wait:  # where the old bench stopped waiting
                old_wait.update(head=head, cursor=cursor, undelivered=head - cursor)
            return cursor >= head

        t_drained = wait_for(drained, 900, "drain", 0.01)
        rss_after = peak_rss_mb(gw.pid)
    finally:
        stop_all([gw], broker)
    after = vm_points(vm)
    ledger = Ledger(first, messages, meters, points, seq_step)
    ledger.count_tsdb(vm)
    ledger.count_buffer(gw.db)
    drain = round(total / (t_drained - t1))
    return {
        "readings": total,
        "seq_step": seq_step,
        "readings_per_message": per_msg,
        "ingest_readings_per_s_tsdb_down": round(total / (t_ingested - t0)),
        "buffer_bytes": bytes_on_disk,
        "peak_rss_mb_buffered": round(rss_buffered, 1),
        "peak_rss_mb_after_drain": round(rss_after, 1),
        "drain_readings_per_s": drain,
        "drain_s": round(t_drained - t1, 2),
        "first_write_after_tsdb_up_s": round(t1 - t_up, 2),
        "ceilings": common,
        "drain_share_of_tsdb_ceiling": round(drain / common["tsdb_write"]["readings_per_s"], 3),
        "lost_by_old_count": total - (after - before),
        "old_wait_ended_with": old_wait,
        "count": ledger.summary(),
        "lost": ledger.summary()["lost"],
    }


def phase_kill(
    work: Path, broker: MosquittoServer, vm: VictoriaMetricsServer, cycles: int, first: int
) -> dict[str, Any]:
    """kill -9 in a loop while a publisher sends at 100 messages/s; then count per reading."""
    gw = make_gateway(work, "s3", broker, vm, batch_size=2000, flush_interval="50ms")
    # A second sink that never delivers (no broker on port 1) holds every row in the
    # buffer, so that a reading stored twice is counted there, not guessed from seqs.
    gw.config.write_text(
        gw.config.read_text() + '[sinks.mqtt]\nbroker = { url = "mqtt://127.0.0.1:1" }\n'
    )
    rng = random.Random(11)
    pub = start_publisher(broker, first, 10**6, 100.0)
    started = time.monotonic()
    for _ in range(cycles):
        gw.start()
        time.sleep(rng.uniform(0.4, 1.4))  # the kill lands anywhere, start-up included
        gw.stop(signal.SIGKILL)
    pub.send_signal(signal.SIGTERM)
    published = publisher_result(pub)
    soak_s = time.monotonic() - started
    acked = published["acked"]  # paho confirms in order: messages first .. first+acked-1
    gw.start()
    try:
        last = first + acked - 1
        wait_for(
            lambda: concentrator_mark(gw.db) >= last and delivered(gw), 300, "final delivery", 0.2
        )
        head, _ = buffer_state(gw.db)
    finally:
        stop_all([gw], broker)
    ledger = Ledger(first, acked, 25, 4)
    ledger.count_tsdb(vm)
    ledger.count_buffer(gw.db)
    counted = ledger.summary()
    return {
        "cycles": cycles,
        "soak_s": round(soak_s, 1),
        "messages_acked_by_broker": acked,
        "readings": acked * 100,
        "lost": counted["lost"],
        "listed_twice_by_tsdb": counted["listed_twice_by_tsdb"],
        "stored_twice_in_buffer": counted["stored_twice_in_buffer"],
        "seqs_not_readings": head - acked * 100,  # events (repeats, gaps) and any doubles
        "count": counted,
    }
