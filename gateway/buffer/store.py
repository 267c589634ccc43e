"""The buffer: durable, append-only store of readings and events, with group commit.

Callers on the event loop hand in jobs (``submit``, ``accept``); a committer
task commits as soon as there is work and the previous commit has finished
(classic group commit: the group is what queued during the last fsync, at most
``commit_max_rows`` rows), on the one writer thread, in one SQLite transaction
(one fsync), and then resolves every caller's future. Nothing waits for a timer.

A group that fails because of one job's content (an integer SQLite cannot hold)
is rolled back and its jobs are committed one by one: the job that fails again
is quarantined and resolved ``REJECTED``, the others commit. A group that fails
because the store fails (disk full) fails every caller, who must not acknowledge.

SQLite never runs on the event loop: writes on the writer thread and its
connection, forwarder reads on their own connections in worker threads (WAL
lets them read while the writer commits).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from gateway.buffer.jobs import Outcome, WriteJob
from gateway.buffer.reads import SinkReads
from gateway.buffer.rows import (
    Batch,
    BufferStats,
    QuarantineEntry,
    Reference,
    SinkStats,
)
from gateway.buffer.schema import BufferError, connect_reader, connect_writer
from gateway.buffer.tally import CommitTally
from gateway.buffer.writer import Applied, BufferWriter, JobDataError
from gateway.config.northbound import BufferConfig
from gateway.lifecycle import Lifecycle
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.model import Event, Reading, rows_of

log = get_logger("buffer")


class Buffer(Lifecycle):
    """The durable store every reading passes through. Use :meth:`open`.

    Sources reach it through the write path (:mod:`gateway.writepath`), forwarders
    directly; ``submit`` is a :class:`~gateway.buffer.JobStore`.
    """

    def __init__(
        self,
        writer: BufferWriter,
        pool: ThreadPoolExecutor,
        config: BufferConfig,
        metrics: Metrics,
    ) -> None:
        self.path = writer.path
        self._writer = writer
        self._pool = pool
        self._config = config
        self._metrics = metrics
        self._tally = CommitTally(metrics)
        self._loop = asyncio.get_running_loop()
        self._pending: list[tuple[WriteJob, asyncio.Future[WriteJob]]] = []
        self._pending_size = 0
        self._has_pending = asyncio.Event()
        self._new_data = asyncio.Event()
        self._closing = False
        self.healthy = True
        """False after a failed commit, until the next commit succeeds."""
        self._reads = SinkReads(writer, metrics)
        self._committer = asyncio.create_task(self._commit_loop(), name="buffer-committer")
        self._committer.add_done_callback(self._committer_ended)
        metrics.buffer_rows.set(writer.rows)

    @classmethod
    async def open(cls, path: str, config: BufferConfig, metrics: Metrics) -> Buffer:
        """Open or create the database; raise :class:`BufferError` naming ``path`` if unusable."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer-writer")
        loop = asyncio.get_running_loop()

        def opener() -> BufferWriter:
            conn = connect_writer(path)
            try:
                return BufferWriter(path, conn, config.max_bytes)
            except sqlite3.Error as exc:
                conn.close()
                raise BufferError(f"buffer {path}: not a usable buffer database ({exc})") from None

        try:
            writer = await loop.run_in_executor(pool, opener)
        except BaseException:
            pool.shutdown(wait=False)
            raise
        log.info("buffer_opened", path=path, rows=writer.rows, head_seq=writer.head_seq)
        return cls(writer, pool, config, metrics)

    async def start(self) -> None:
        """Nothing left to do: :meth:`open` opened it (``async with await Buffer.open(...)``)."""

    async def stop(self) -> None:
        """:meth:`close`, under the name ``async with`` calls on the way out."""
        await self.close()

    # -- writing -----------------------------------------------------------------------

    async def accept(self, readings: Sequence[Reading], events: Sequence[Event] = ()) -> None:
        """Store readings and events durably; return after the commit.

        Raises :class:`BufferError` when the commit failed (disk full...): then
        nothing of this call is stored and the caller must not acknowledge.
        """
        await self.submit(WriteJob(rows=rows_of(readings), events=events))

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        """Queue a job for the next group commit, in call order; the future resolves after it.

        Jobs commit in the order they were submitted, so a caller may submit
        several and await them later (the concentrator ingest does).
        """
        if self._closing:
            raise BufferError(f"buffer {self.path}: closed")
        if self._committer.done():
            raise BufferError(f"buffer {self.path}: the committer stopped")
        fut: asyncio.Future[WriteJob] = self._loop.create_future()
        self._pending.append((job, fut))
        self._pending_size += job.size()
        self._has_pending.set()
        return fut

    def _committer_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.critical("buffer_committer_died", path=self.path, error=repr(exc))
        self.healthy = False
        err = BufferError(f"buffer {self.path}: the committer stopped: {exc!r}")
        waiting, self._pending = self._pending, []
        for _, fut in waiting:
            if not fut.done():
                fut.set_exception(err)

    async def watch(self) -> None:
        """Return when the buffer closes; raise if its committer task died (a bug), so that
        the task that awaits this (the daemon's task group) takes the daemon down with the
        reason instead of letting every later commit hang."""
        await asyncio.shield(self._committer)

    async def quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        """Keep refused things for inspection (committed on return)."""
        await self.submit(WriteJob(quarantine=entries))

    def advance(
        self, sink: str, upto: int, quarantine: Sequence[QuarantineEntry] = ()
    ) -> asyncio.Future[WriteJob]:
        """Move ``sink``'s cursor to ``upto`` at the next commit, quarantining what it refused."""
        return self.submit(WriteJob(quarantine=quarantine, cursor=(sink, upto)))

    async def _commit_loop(self) -> None:
        # Classic group commit: commit as soon as there is work and the previous commit
        # has finished. The group is whatever queued while the last fsync ran, so a busy
        # gateway commits big groups and an idle one commits at once: no fixed wait.
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._has_pending.clear()
                await self._has_pending.wait()  # set by submit, and by close
                continue
            group = self._take_group()
            try:
                await self._commit(group)
            except BaseException as exc:
                err = BufferError(f"buffer {self.path}: the committer stopped: {exc!r}")
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(err)
                raise

    def _take_group(self) -> list[tuple[WriteJob, asyncio.Future[WriteJob]]]:
        """The oldest pending jobs, up to ``commit_max_rows`` rows (at least one job)."""
        limit = self._config.commit_max_rows
        if self._pending_size <= limit:
            group, self._pending = self._pending, []
            self._pending_size = 0
            return group
        size = n = 0
        for job, _ in self._pending:
            size += job.size()
            n += 1
            if size >= limit:
                break
        group, self._pending = self._pending[:n], self._pending[n:]
        self._pending_size -= size
        return group

    async def _commit(self, group: list[tuple[WriteJob, asyncio.Future[WriteJob]]]) -> None:
        jobs = [job for job, _ in group]
        started = time.perf_counter()
        try:
            applied = await self._loop.run_in_executor(self._pool, self._writer.apply, jobs)
        except JobDataError as exc:
            # Something in one job cannot be stored (its content, not the disk): find it by
            # committing the jobs one by one, refuse it, and commit the rest.
            log.warning(
                "buffer_commit_retried_alone", path=self.path, jobs=len(jobs), error=str(exc)
            )
            await self._commit_alone(group)
            return
        except Exception as exc:  # the daemon lives on; every caller hears "not accepted"
            self._failed(group, exc)
            return
        self._committed(group, applied, started)

    async def _commit_alone(self, group: list[tuple[WriteJob, asyncio.Future[WriteJob]]]) -> None:
        """Commit each job of a failed group on its own; a job that fails again is refused:
        quarantined with the reason, its future resolved as ``REJECTED``. When the store
        itself fails, every caller from there on is told."""
        for i, (job, fut) in enumerate(group):
            started = time.perf_counter()
            try:
                try:
                    applied = await self._loop.run_in_executor(
                        self._pool, self._writer.apply, [job]
                    )
                except JobDataError as exc:
                    refused = job.refusal(str(exc))
                    applied = await self._loop.run_in_executor(
                        self._pool, self._writer.apply, [refused]
                    )
                    job.outcome, job.reason = Outcome.REJECTED, refused.quarantine[0].reason
                    self._tally.job(refused)
                    log.error(
                        "write_job_refused",
                        origin=job.origin,
                        subject=job.subject,
                        reason=job.reason,
                    )
            except Exception as exc:
                self._failed(group[i:], exc)
                return
            self._committed([(job, fut)], applied, started)

    def _failed(
        self, group: list[tuple[WriteJob, asyncio.Future[WriteJob]]], exc: Exception
    ) -> None:
        err = exc if isinstance(exc, BufferError) else BufferError(f"buffer {self.path}: {exc}")
        log.error("buffer_commit_failed", path=self.path, jobs=len(group), error=str(err))
        self.healthy = False
        # Jobs already waiting were submitted before anyone could know: fail them too,
        # so that no later job commits ahead of a failed one (the ingest resubmits in
        # arrival order, and a concentrator's seq must be stored in that order).
        waiting, self._pending = self._pending, []
        self._pending_size = 0
        for _, fut in (*group, *waiting):
            if not fut.done():
                fut.set_exception(err)

    def _committed(
        self,
        group: list[tuple[WriteJob, asyncio.Future[WriteJob]]],
        applied: Applied,
        started: float,
    ) -> None:
        self.healthy = True
        for job, fut in group:
            self._tally.job(job)
            if not fut.done():
                fut.set_result(job)
        self._reads.committed(applied)
        if applied.dropped:
            self._cap_dropped(applied.dropped)
        self._tally.committed(self._writer, time.perf_counter() - started)
        self._new_data.set()
        self._new_data = asyncio.Event()

    def _cap_dropped(self, rows: int) -> None:
        self._metrics.buffer_dropped.inc(rows)
        log.warning(
            "buffer_cap_dropped", path=self.path, rows=rows, max_bytes=self._config.max_bytes
        )

    # -- reading -----------------------------------------------------------------------

    @property
    def head_seq(self) -> int:
        """Last committed sequence."""
        return self._writer.head_seq

    async def register_sink(self, sink: str) -> int:
        """Give ``sink`` a durable cursor if it has none; return the cursor."""
        cursor = await self._loop.run_in_executor(self._pool, self._writer.register_sink, sink)
        self._metrics.buffer_depth.labels(sink=sink).set(0)
        return cursor

    async def forget_sink(self, sink: str) -> None:
        """Drop ``sink``'s cursor (a sink removed from the config no longer holds rows)."""
        await self._loop.run_in_executor(self._pool, self._writer.forget_sink, sink)

    def stalled(self, sink: str) -> None:
        """``sink``'s write failed: keep no rows in memory for it until it reads again."""
        self._reads.stalled(sink)

    async def read(self, sink: str, after: int, limit: int) -> Batch:
        """Up to ``limit`` readings (and the events among them) after sequence ``after``.

        A registered sink that keeps up gets the rows just committed from memory (the
        tail); everything else is read from the database, with the same result."""
        return await self._reads.read(sink, after, limit)

    async def references(self) -> list[Reference]:
        """The validation references kept by earlier runs (see ``WriteJob.refs``)."""

        def load() -> list[Reference]:
            conn = connect_reader(self.path)
            try:
                return conn.execute("SELECT meter, key, ts_ms, value FROM refs").fetchall()
            finally:
                conn.close()

        try:
            return await asyncio.to_thread(load)
        except sqlite3.Error as exc:
            raise BufferError(f"buffer {self.path}: cannot read references: {exc}") from None

    def marks(self) -> dict[str, tuple[int, int]]:
        """Concentrator id -> (seq, batch time ms) of its newest stored message."""
        return dict(self._writer.marks)

    async def wait_for_data(self, after: int, within: float) -> bool:
        """Wait up to ``within`` seconds for a commit after ``after``; False if none came."""
        deadline = time.monotonic() + within
        while self._writer.head_seq <= after:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):
                    await self._new_data.wait()
            except TimeoutError:
                return False
        return True

    def stats(self) -> BufferStats:
        """A snapshot for ``/status``; cheap (no query)."""
        w = self._writer
        sinks = {
            sink: SinkStats(
                cursor=cursor,
                depth=w.behind(cursor),
                oldest_unsent_ms=self._reads.oldest_unsent.get(sink),
            )
            for sink, cursor in w.cursors.items()
        }
        return BufferStats(
            path=self.path,
            rows=w.rows,
            bytes=w.bytes,
            head_seq=w.head_seq,
            sinks=sinks,
            dropped=w.dropped,
            quarantined=w.quarantined,
            commits=w.commits,
            repeats=w.repeats,
        )

    async def close(self) -> None:
        """Commit what is pending, then close every connection."""
        if self._closing:
            return
        self._closing = True
        self._has_pending.set()
        try:
            if not self._committer.done():
                await self._committer
        finally:
            self._reads.close()
            await self._loop.run_in_executor(self._pool, self._writer.close)
            self._pool.shutdown(wait=True)
            log.info("buffer_closed", path=self.path)
