"""Concentrator seq gaps in the ledger, against a real Mosquitto and a real buffer: filed
with the message that revealed them, filled by late messages, closed after the wait
(an injected time, never slept), kept across a restart, and none on a shared subscription.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.buffer import Buffer, WriteJob
from gateway.config import load_config
from gateway.config.northbound import BufferConfig, IngestConfig, MqttBroker
from gateway.daemon import Daemon
from gateway.gaps import GapLedger, GapRecord, GapState, SeqGaps, load_gaps, read_gaps
from gateway.gaps.network import close_due
from gateway.ingest import ConcentratorIngest
from gateway.metrics import Metrics
from tests.gateway.ingest.payloads import HOUR, batch, encode
from tests.integration.helpers import Publisher, write_config
from tests.servers import MosquittoServer

pytestmark = pytest.mark.asyncio
TOPIC = "meters/v1/c1/readings"


async def until(pred: Callable[[], bool], within: float = 15.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


class Recorded:
    """The buffer, with every job handed to it kept for the test to look at."""

    def __init__(self, buf: Buffer) -> None:
        self.buf = buf
        self.jobs: list[WriteJob] = []

    @property
    def healthy(self) -> bool:
        return self.buf.healthy

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        self.jobs.append(job)
        return self.buf.submit(job)


def message(seq: int) -> bytes:
    """Batch ``seq``, stamped ``seq`` minutes into the test hour (by the concentrator)."""
    ts = (HOUR + timedelta(minutes=seq % 1440)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return encode({**batch(seq=seq, base=seq), "ts": ts})


def ms(seq: int) -> int:
    return int((HOUR + timedelta(minutes=seq % 1440)).timestamp() * 1000)


@asynccontextmanager
async def running(
    path: Path,
    broker: MosquittoServer,
    *,
    topics: list[str] | None = None,
    gaps: list[GapRecord] | None = None,
) -> AsyncIterator[tuple[Buffer, Recorded, ConcentratorIngest, SeqGaps]]:
    extra: dict[str, Any] = {"topics": topics} if topics else {}
    cfg = IngestConfig(
        broker=MqttBroker(url=broker.url, client_id="gw-seq-gaps"), seq_gap_wait="1h", **extra
    )
    buf = await Buffer.open(str(path), BufferConfig(), Metrics())
    store = Recorded(buf)
    seq_gaps = SeqGaps(cfg.seq_gap_wait, GapLedger(Metrics()))
    seq_gaps.take(gaps or ())
    ing = ConcentratorIngest(
        cfg, store, Metrics(), gateway_name="gw", marks=buf.marks(), seq_gaps=seq_gaps
    )
    task = asyncio.create_task(ing.run())
    try:
        await until(lambda: ing.connected, what="ingest connected")
        yield buf, store, ing, seq_gaps
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await buf.close()


async def publish(broker: MosquittoServer, *seqs: int, topic: str = TOPIC) -> None:
    with Publisher(broker.host, broker.port) as pub:
        await asyncio.to_thread(pub.publish_many, [(topic, message(s)) for s in seqs])


async def gap_events(buf: Buffer) -> list[tuple[str, str]]:
    batch_ = await buf.read("check", 0, 10_000)
    return [(e[1], e[4]) for e in batch_.events]


async def test_a_seq_jump_is_a_ledger_row_in_the_same_commit_and_late_messages_fill_it(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    path = tmp_path / "b.sqlite"
    async with running(path, mosquitto) as (buf, store, ing, seq_gaps):
        await publish(mosquitto, 1, 2, 6)
        await until(lambda: ing.received == 3 and ing._window.messages == 0, what="3 messages")
        # The job of message 6 carried its readings, its seq and the gap's row together.
        [job6] = [j for j in store.jobs if j.mark is not None and j.mark.seq == 6]
        assert len(job6.rows) == 4
        assert len(job6.gaps) == 1
        assert [e.kind.value for e in job6.events] == ["network_gap", "gap_opened"]
        [gap] = read_gaps(str(path))
        assert gap.id == GapRecord.from_row(job6.gaps[0]).id
        assert (gap.meter, gap.cause.value, gap.state) == ("c1", "concentrator_seq", GapState.OPEN)
        assert (gap.seqs, gap.expected, gap.start_ms, gap.end_ms) == ((3, 5), 3, ms(2), ms(6))
        assert seq_gaps.ledger is not None
        assert gap.id in seq_gaps.ledger.gaps
        # The concentrator sends what it held back, out of order.
        await publish(mosquitto, 4, 3, 5)
        await until(lambda: ing.received == 6 and ing._window.messages == 0, what="late ones")
        [filled] = read_gaps(str(path))
        assert (filled.state, filled.recovered, filled.missing) == (GapState.FILLED, 3, 0)
        # Each late message's count committed with it: no job of their own.
        assert all(j.mark is not None for j in store.jobs if j.gaps)
        # The late messages left the concentrator's newest seq at 6: 7 is no gap.
        await publish(mosquitto, 7)
        await until(lambda: ing.received == 7 and ing._window.messages == 0, what="message 7")
        assert buf.marks()["c1"][0] == 7
        events = await gap_events(buf)
    assert [k for k, _ in events] == ["network_gap", "gap_opened", "gap_filling", "gap_filled"]
    assert events[0][1] == "missing seq 3..5"
    assert [g.state for g in read_gaps(str(path))] == [GapState.FILLED]


async def test_a_gap_survives_a_restart_and_closes_after_the_wait(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    path = tmp_path / "b.sqlite"
    async with running(path, mosquitto) as (buf, _store, ing, _):
        await publish(mosquitto, 1, 5, 9)
        await until(lambda: ing.received == 3 and ing._window.messages == 0, what="3 messages")
        await publish(mosquitto, 2)  # one late message before the restart
        await until(lambda: ing.received == 4 and ing._window.messages == 0, what="message 2")
    before = {g.seqs: g for g in read_gaps(str(path))}
    assert before[(2, 4)].recovered == 1
    assert before[(2, 4)].todo_from_ms == 2
    # The next start: the ledger gives the open gaps back; a late message still counts.
    gaps = await load_gaps(str(path))
    async with running(path, mosquitto, gaps=gaps) as (buf, store, ing, seq_gaps):
        assert len(seq_gaps.active()) == 2
        await publish(mosquitto, 3)
        await until(lambda: ing.received == 1 and ing._window.messages == 0, what="message 3")
        [late] = [g for g in read_gaps(str(path)) if g.seqs == (2, 4)]
        assert (late.state, late.recovered) == (GapState.FILLING, 2)
        # An hour of quiet later (the clock is passed in): both close, with events.
        changed = [g.updated_ms for g in seq_gaps.active()]
        assert await close_due(seq_gaps, store, min(changed) + 3_599_999) == 0
        assert await close_due(seq_gaps, store, max(changed) + 3_600_000) == 2
        events = await gap_events(buf)
    after = {g.seqs: g for g in read_gaps(str(path))}
    assert after[(2, 4)].state is GapState.PARTLY_FILLED
    assert (after[(2, 4)].recovered, after[(2, 4)].missing) == (2, 1)
    assert after[(6, 8)].state is GapState.UNRECOVERABLE
    assert after[(6, 8)].reason == "none of the 3 missing message(s) came: waited 3600 s for them"
    assert [k for k, _ in events if k.startswith("gap_")][-2:] == [
        "gap_partly_filled",
        "gap_unrecoverable",
    ]


async def test_a_shared_subscription_files_no_gap(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    path = tmp_path / "b.sqlite"
    shared = ["$share/gws/meters/v1/+/readings"]
    async with running(path, mosquitto, topics=shared) as (buf, _store, ing, seq_gaps):
        await publish(mosquitto, 1, 2, 6)
        await until(lambda: ing.received == 3 and ing._window.messages == 0, what="3 messages")
        events = await gap_events(buf)
    assert events == []
    assert read_gaps(str(path)) == []
    assert seq_gaps.active() == []


async def test_a_hostile_seq_files_no_huge_gap(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    path = tmp_path / "b.sqlite"
    async with running(path, mosquitto) as (buf, _store, ing, seq_gaps):
        await publish(mosquitto, 5, 2**63 - 1, 6)
        await until(lambda: ing.received == 3 and ing._window.messages == 0, what="3 messages")
        await until(lambda: buf.stats().rows >= 14, what="the events after the commits")
        events = await gap_events(buf)
    assert [k for k, _ in events] == ["counter_reset", "counter_reset"]
    assert "no gap filed" in events[0][1]
    assert read_gaps(str(path)) == []
    assert seq_gaps.active() == []


async def test_the_daemon_shows_concentrator_gaps_and_takes_them_up_after_a_restart(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    config = write_config(
        tmp_path / "gw.toml",
        state_dir=tmp_path / "state",
        mqtt_url=mosquitto.url,
        client_id="gw-seq-daemon",
    )
    config.write_text(config.read_text() + "[http]\nenabled = false\n")

    @asynccontextmanager
    async def daemon_running() -> AsyncIterator[Daemon]:
        daemon = Daemon(load_config(config), config_path=str(config))
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.started.wait(), 10)
            ingest = daemon.status.ingest
            await until(lambda: ingest is not None and bool(ingest.connected), what="ingest")
            yield daemon
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 15)

    def shown(daemon: Daemon) -> dict[str, Any]:
        assert daemon.status.gaps is not None
        doc: dict[str, Any] = daemon.status.gaps.to_json(int(time.time() * 1000))
        return doc

    async with daemon_running() as daemon:
        await publish(mosquitto, 1, 5)
        await until(lambda: shown(daemon)["counts"]["open"] == 1, what="the gap in /status")
        [g] = shown(daemon)["gaps"]
        assert (g["meter"], g["cause"], g["state"]) == ("c1", "concentrator_seq", "open")
        assert (g["seq_first"], g["seq_last"], g["expected"], g["missing"]) == (2, 4, 3, 3)
        sample = daemon.metrics.registry.get_sample_value
        assert sample("metergw_gaps", {"state": "open"}) == 1
    async with daemon_running() as daemon:
        assert shown(daemon)["counts"]["open"] == 1  # from the ledger, before any message
        await publish(mosquitto, 3)
        await until(lambda: shown(daemon)["counts"]["filling"] == 1, what="a late message")
        [g] = shown(daemon)["gaps"]
        assert (g["recovered"], g["missing"]) == (1, 2)
        assert daemon.metrics.registry.get_sample_value("metergw_gaps", {"state": "open"}) == 0
        # A reload restarts the ingest (its section changed): the gaps stay and late
        # messages still count.
        old_ingest = daemon.status.ingest
        text = config.read_text().replace("[ingest]\n", '[ingest]\nseq_gap_wait = "2h"\n')
        config.write_text(text)
        daemon.request_reload()

        def restarted() -> bool:
            new = daemon.status.ingest
            return new is not None and new is not old_ingest and bool(new.connected)

        await until(restarted, what="the ingest restarted")
        await publish(mosquitto, 4)
        await until(lambda: shown(daemon)["gaps"][0]["recovered"] == 2, what="late after reload")
        assert shown(daemon)["counts"]["filling"] == 1
