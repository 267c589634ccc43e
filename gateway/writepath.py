"""The one path of a write: validate, one buffer submit, commit listeners.

Every source (bus tasks, backfill, the concentrator ingest, the analytics closer)
hands a :class:`~gateway.buffer.WriteJob` to :meth:`WritePath.submit`:

1. the :class:`~gateway.validate.Validator` flags its readings (a pure check of the
   batch against the reference state) and adds the events it found;
2. the buffer queues it for the next group commit and returns a future;
3. when the commit lands, the validator takes up the references the job moved and
   each :class:`CommitListener` (the status tap) hears of it, in that order, before
   the source's own callbacks run (a concentrator message's acknowledgement).

Nothing else stands between a source and the buffer: policy (seq gaps, repeats)
belongs to the sources, storage to the buffer.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Protocol

from gateway.buffer import JobStore, Reference, WriteJob
from gateway.model import Event, Reading, rows_of
from gateway.validate import Latest, Validator


class CommitListener(Protocol):
    """Told of every job whose commit finished, in commit order."""

    def committed(self, job: WriteJob) -> None:
        """``job`` is stored (or was a repeat, or was refused: see ``job.outcome``)."""
        ...

    def failed(self, error: BaseException) -> None:
        """A commit failed: nothing of its jobs was stored."""
        ...


class WritePath:
    """Validate, submit to the buffer, tell the listeners: a :class:`JobStore`."""

    def __init__(
        self,
        store: JobStore,
        validator: Validator | None = None,
        listeners: Sequence[CommitListener] = (),
    ) -> None:
        self._store = store
        self.validator = validator or Validator()
        self._listeners = tuple(listeners)
        self._inflight: set[asyncio.Future[WriteJob]] = set()

    @property
    def healthy(self) -> bool:
        """Whether the buffer is committing (see :class:`JobStore`)."""
        return self._store.healthy

    def submit(self, job: WriteJob) -> asyncio.Future[WriteJob]:
        """Flag the job's readings, queue it for commit; the future resolves after it."""
        checked, latest, refs = self.validator.check(job)
        fut = self._store.submit(checked)
        self._inflight.add(fut)
        fut.add_done_callback(functools.partial(self._done, latest, refs))
        return fut

    def _done(self, latest: Latest, refs: list[Reference], fut: asyncio.Future[WriteJob]) -> None:
        self._inflight.discard(fut)
        if fut.cancelled():
            self.validator.unsaved(refs)
            return
        exc = fut.exception()
        if exc is not None:
            # The references move only with what was stored: a failed commit changes nothing.
            self.validator.unsaved(refs)
            for listener in self._listeners:
                listener.failed(exc)
            return
        job = fut.result()
        self.validator.committed(job, latest)
        for listener in self._listeners:
            listener.committed(job)

    async def accept(self, readings: Sequence[Reading], events: Sequence[Event] = ()) -> WriteJob:
        """Submit readings and events and wait for their commit; a cancelled caller does
        not cancel the commit. Raises :class:`~gateway.buffer.BufferError` when it failed."""
        job = WriteJob(rows=rows_of(readings), events=events)
        return await asyncio.shield(self.submit(job))

    async def save(self) -> int:
        """Store every changed validation reference now (at shutdown); return how many."""
        refs = self.validator.take_refs()
        if not refs:
            return 0
        await asyncio.shield(self.submit(WriteJob(refs=refs)))
        return len(refs)

    @property
    def in_flight(self) -> int:
        """Jobs handed to the buffer whose commit has not finished."""
        return len(self._inflight)

    async def drain(self) -> None:
        """Wait until every commit in flight has finished (bound it with ``asyncio.timeout``)."""
        while self._inflight:
            await asyncio.wait(set(self._inflight))
