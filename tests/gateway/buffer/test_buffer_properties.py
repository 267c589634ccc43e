"""Random interleavings of accept, deliver and restart never lose or repeat a row per sink."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.buffer import Buffer, BufferError
from gateway.buffer import writer as writer_module
from gateway.config.northbound import BufferConfig
from gateway.metrics import Metrics
from tests.disk import small_disk
from tests.gateway.buffer.factory import event, reading

SINKS = ("influx", "mqtt")
CFG = BufferConfig(commit_interval=0.0, commit_max_rows=50)

op = st.one_of(
    st.tuples(st.just("accept"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("deliver"), st.sampled_from(SINKS), st.integers(1, 40)),
    st.tuples(st.just("restart"), st.just(0), st.just(False)),
)


async def _run(path: str, ops: list[tuple[str, object, object]]) -> None:
    accepted: list[int] = []
    delivered: dict[str, list[int]] = {s: [] for s in SINKS}
    pos: dict[str, int] = {}
    n = 0
    buf = await Buffer.open(path, CFG, Metrics())
    for s in SINKS:
        pos[s] = await buf.register_sink(s)
    try:
        for kind, a, b in ops:
            if kind == "accept":
                count = int(str(a))
                rows = [reading(n + i) for i in range(count)]
                n += count
                await buf.accept(rows, [event(n)] if b else [])
                accepted.extend(range(buf.head_seq - count - (1 if b else 0) + 1, buf.head_seq + 1))
            elif kind == "deliver":
                sink, limit = str(a), int(str(b))
                batch = await buf.read(sink, pos[sink], limit)
                delivered[sink] += sorted(
                    [r[0] for r in batch.readings] + [e[0] for e in batch.events]
                )
                await buf.advance(sink, batch.upto)
                pos[sink] = batch.upto
            else:
                await buf.close()
                buf = await Buffer.open(path, CFG, Metrics())
                for s in SINKS:
                    assert buf.stats().sinks[s].cursor == pos[s]
        for s in SINKS:
            while True:
                batch = await buf.read(s, pos[s], 1000)
                if not batch:
                    break
                delivered[s] += sorted(
                    [r[0] for r in batch.readings] + [e[0] for e in batch.events]
                )
                await buf.advance(s, batch.upto)
                pos[s] = batch.upto
        await buf.accept([])  # one more commit runs the pruning
        assert buf.stats().rows == 0
    finally:
        await buf.close()
    for s in SINKS:
        assert sorted(delivered[s]) == delivered[s], "out of order"
        assert delivered[s] == sorted(accepted), f"{s}: lost or repeated rows"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=25))
def test_every_sink_gets_every_row_once(ops: list[tuple[str, object, object]]) -> None:
    original = writer_module.MAINTAIN_EVERY_S
    writer_module.MAINTAIN_EVERY_S = 0.0
    try:
        with tempfile.TemporaryDirectory() as d:
            asyncio.run(_run(str(Path(d) / "b.sqlite"), ops))
    finally:
        writer_module.MAINTAIN_EVERY_S = original


@pytest.mark.asyncio
async def test_full_disk_refuses_then_recovers(tmp_path: Path) -> None:
    async with small_disk(tmp_path / "small") as mnt:
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (1024 * 1024))
        async with await Buffer.open(str(mnt / "b.sqlite"), CFG, Metrics()) as buf:
            stored = 0
            failure: BufferError | None = None
            for i in range(200):
                try:
                    await buf.accept([reading(i * 1000 + j) for j in range(1000)])
                except BufferError as exc:
                    failure = exc
                    break
                stored += 1000
            assert failure is not None
            assert "b.sqlite" in str(failure)
            assert "full" in str(failure)
            assert buf.stats().rows == stored  # the failed group left nothing behind
            filler.unlink()  # the operator frees space; the same buffer goes on
            await buf.accept([reading(10**6)])
            assert buf.stats().rows == stored + 1
