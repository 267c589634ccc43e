"""One forwarder per sink: read after the cursor, write, then move the cursor.

At-least-once: the cursor moves only after the sink confirmed the batch, so a
crash between the write and the cursor commit replays the batch, which the
sink absorbs because every point's identity is derived from the reading.
The cursor commit is not awaited before the next read (the forwarder keeps
its own position in memory), so a slow commit never throttles delivery.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import orjson

from gateway.buffer import Batch, Buffer, BufferError, QuarantineEntry
from gateway.buffer.jobs import WriteJob
from gateway.buffer.rows import EVENT_COLUMNS, READING_COLUMNS
from gateway.forward.sink import Sink, SinkAuthError, SinkUnavailable, WriteResult
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.model import Event, EventKind

log = get_logger("forward")


def _quarantine(sink: str, batch: Batch, result: WriteResult) -> list[QuarantineEntry]:
    """The refused rows as quarantine entries, each with the row itself as JSON."""
    out: list[QuarantineEntry] = []
    if not result.rejected_seqs:
        return out
    for row in batch.readings:
        reason = result.rejected_seqs.get(row[0])
        if reason is not None:
            payload = orjson.dumps(dict(zip(READING_COLUMNS, row, strict=True)))
            out.append(QuarantineEntry(sink, row[1], reason, payload, row[0]))
    for ev in batch.events:
        reason = result.rejected_seqs.get(ev[0])
        if reason is not None:
            payload = orjson.dumps(dict(zip(EVENT_COLUMNS, ev, strict=True)))
            out.append(QuarantineEntry(sink, ev[3], reason, payload, ev[0]))
    return out


class Forwarder:
    """Moves rows from the buffer to one sink until cancelled."""

    def __init__(
        self,
        buffer: Buffer,
        sink: Sink,
        metrics: Metrics,
        *,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        auth_retry: float = 60.0,
    ) -> None:
        self._buf = buffer
        self._sink = sink
        self._metrics = metrics
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._auth_retry = auth_retry
        self.position = 0
        """Last sequence written (the durable cursor follows it at the next commit)."""
        self.delivered = 0
        self._sink_up = False
        """Whether the last write went through at once: only then is reading ahead worth
        its memory (during an outage the next batch would wait in memory for nothing)."""

    async def run(self) -> None:
        """Forward until cancelled; sink errors are retried, never fatal."""
        name = self._sink.name
        self.position = await self._buf.register_sink(name)
        log.info("forwarder_started", sink=name, cursor=self.position)
        prefetch: asyncio.Task[Batch] | None = None
        try:
            while True:
                if prefetch is None:
                    await self._wait_for_batch()
                    batch = await self._buf.read(name, self.position, self._sink.batch_size)
                else:
                    batch = await prefetch
                    prefetch = None
                if not batch:
                    if batch.upto > self.position:
                        self._advance(batch.upto, [])
                    else:  # nothing visible yet after the cursor: do not spin
                        await asyncio.sleep(0.05)
                    continue
                if self._sink_up and self._buf.head_seq > batch.upto:
                    # Backlog and a working sink: read the next batch meanwhile.
                    prefetch = asyncio.create_task(
                        self._buf.read(name, batch.upto, self._sink.batch_size)
                    )
                result = await self._deliver(batch)
                self._advance(batch.upto, _quarantine(name, batch, result))
        finally:
            if prefetch is not None:
                prefetch.cancel()

    async def _wait_for_batch(self) -> None:
        """Wait until a full batch is buffered, or the oldest waited ``flush_interval``."""
        buf, size = self._buf, self._sink.batch_size
        while buf.head_seq <= self.position:
            await buf.wait_for_data(self.position, 3600.0)
        deadline = time.monotonic() + self._sink.flush_interval
        while buf.head_seq - self.position < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await buf.wait_for_data(buf.head_seq, remaining):
                return

    async def _deliver(self, batch: Batch) -> WriteResult:
        """Write until the sink confirms; back off on transient errors."""
        sink, m = self._sink, self._metrics
        delay = self._retry_min
        alarmed = False
        first_try = True
        while True:
            started = time.perf_counter()
            self._sink_up = False
            try:
                result = await sink.write(batch)
            except SinkAuthError as exc:
                m.sink_errors.labels(sink=sink.name, kind="auth").inc()
                log.error("sink_auth_failed", sink=sink.name, error=str(exc))
                if not alarmed:
                    alarmed = await self._alarm(str(exc))
                if first_try:
                    self._buf.stalled(sink.name)
                first_try = False
                await asyncio.sleep(self._auth_retry)
                continue
            except SinkUnavailable as exc:
                m.sink_errors.labels(sink=sink.name, kind=exc.kind).inc()
                wait = exc.retry_after if exc.retry_after is not None else delay
                log.warning("sink_unavailable", sink=sink.name, error=str(exc), retry_in_s=wait)
            except Exception as exc:  # an unexpected sink failure must not stop delivery
                m.sink_errors.labels(sink=sink.name, kind="unexpected").inc()
                wait = delay
                log.exception("sink_failed", sink=sink.name, error=repr(exc), retry_in_s=wait)
            else:
                m.sink_write_seconds.labels(sink=sink.name).observe(time.perf_counter() - started)
                m.sink_points.labels(sink=sink.name).inc(result.accepted)
                if result.rejected_seqs:
                    m.sink_quarantined.labels(sink=sink.name).inc(len(result.rejected_seqs))
                    log.warning(
                        "sink_points_quarantined",
                        sink=sink.name,
                        points=len(result.rejected_seqs),
                        reason=next(iter(result.rejected_seqs.values())),
                    )
                self.delivered += result.accepted
                self._sink_up = first_try
                return result
            if first_try:
                self._buf.stalled(sink.name)
            first_try = False
            await asyncio.sleep(wait * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._retry_max)

    async def _alarm(self, reason: str) -> bool:
        event = Event(
            EventKind.SINK_AUTH_FAILED, time.time_ns() // 1_000_000, self._sink.name, reason
        )
        try:
            await self._buf.submit(WriteJob(events=(event,), origin=self._sink.name))
        except BufferError as exc:
            log.error("sink_alarm_not_stored", sink=self._sink.name, error=str(exc))
            return False
        return True

    def _advance(self, upto: int, quarantine: list[QuarantineEntry]) -> None:
        self.position = upto
        fut = self._buf.advance(self._sink.name, upto, quarantine)
        fut.add_done_callback(self._advanced(upto, quarantine))
        gauge = getattr(self._metrics, "buffer_oldest_unsent_age", None)
        if gauge is not None:
            oldest = self._buf.stats().sinks.get(self._sink.name)
            age = 0.0
            if oldest is not None and oldest.oldest_unsent_ms is not None:
                age = max(0.0, time.time() - oldest.oldest_unsent_ms / 1000)
            gauge.labels(sink=self._sink.name).set(age)

    def _advanced(
        self, upto: int, quarantine: list[QuarantineEntry]
    ) -> Callable[[asyncio.Future[WriteJob]], None]:
        def done(fut: asyncio.Future[WriteJob]) -> None:
            if fut.cancelled() or fut.exception() is None:
                return
            # The cursor stays behind (a later advance moves it, or a restart replays),
            # but refused rows must reach the quarantine table: submit them again.
            log.error(
                "cursor_not_stored", sink=self._sink.name, upto=upto, error=str(fut.exception())
            )
            if quarantine:
                retry = self._buf.advance(self._sink.name, upto, quarantine)
                retry.add_done_callback(self._advanced(upto, quarantine))

        return done
