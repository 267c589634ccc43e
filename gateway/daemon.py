"""The daemon: every part wired together, started in order, stopped in order.

Start: open the buffer (nothing is polled before readings have somewhere to
go), put the validator and the status tap in front of it, start the status
HTTP server (so that ``/readyz`` can say *why* the gateway is not ready yet),
the embedded broker if configured, one forwarder per sink, the scheduler and
concentrator ingest. Every long-lived task belongs to one ``TaskGroup``: if
any of them fails, the rest are cancelled and the daemon exits non-zero for
the service manager to restart it.

Stop (SIGTERM, SIGINT, :meth:`Daemon.request_stop`): sources first (polling
and ingest are cancelled, which closes buses and the MQTT connection), then
the commits they already handed over are awaited, the forwarders get a short
moment to deliver what is queued, and the buffer is closed. The whole
sequence is bounded by ``gateway.shutdown_timeout``; what is committed is safe
even if the bound is hit, because the buffer is a SQLite WAL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.broker import BrokerStartError, EmbeddedBroker
from gateway.buffer import Buffer, BufferError
from gateway.config import Config
from gateway.config.loader import profile_dirs_for
from gateway.forward import Forwarder, Sink, build_sinks
from gateway.gaps import GapRecord, load_gaps, watch_filed
from gateway.gaps.ledger import RECENT_MS
from gateway.ingest import ConcentratorIngest
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.status import RecentEvents, RecentLogHandler, StatusModel, StatusServer, Tap
from gateway.status.http import StatusServerError
from gateway.validate import Validator

log = get_logger("daemon")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

_RECANCEL_S = 0.25
"""How often a task that has not finished is cancelled again during shutdown."""
_FLUSH_SHARE = 0.3
"""Share of the shutdown budget the forwarders get to deliver what is queued."""


class DaemonError(Exception):
    """The daemon cannot start; the message says what and where (path, address)."""


class Daemon:
    """One running gateway. ``await Daemon(config).run()`` until :meth:`request_stop`."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = metrics or Metrics()
        self.recent = RecentEvents(config.http.recent_events)
        self.buffer_path = config.buffer_path()
        self.status = StatusModel(
            config.gateway.name, self.metrics, self.recent, buffer_path=self.buffer_path
        )
        self.http: StatusServer | None = None
        self._last_stored: dict[str, int] = {}
        """Meter id -> time of its newest stored reading, from the validation references."""
        self.started = asyncio.Event()
        """Set once every part has been started (buses may still be connecting)."""
        self.clean = True
        """False when a step of the shutdown ran out of time."""
        self._stop = asyncio.Event()
        self._hard_deadline: float | None = None

    def _remaining(self, floor: float = 0.5) -> float:
        """Seconds left of the shutdown budget (at least ``floor``)."""
        if self._hard_deadline is None:
            return max(floor, self.config.gateway.shutdown_timeout / 4)
        return max(floor, self._hard_deadline - asyncio.get_running_loop().time())

    @property
    def stop_requested(self) -> bool:
        """True once :meth:`request_stop` was called."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Begin the orderly shutdown (idempotent; safe from a signal handler)."""
        if not self._stop.is_set():
            log.info("shutdown_requested", name=self.config.gateway.name)
        self._stop.set()

    @property
    def profile_dirs(self) -> tuple[Path, ...]:
        """Where Modbus register-map profiles are looked up."""
        return profile_dirs_for(self.config_path or "")

    async def run(self) -> None:
        """Start everything, serve until stopped, stop everything in order.

        Raises :class:`DaemonError` when a part cannot start (buffer path,
        listen address), with a message naming it.
        """
        cfg = self.config
        ring = RecentLogHandler(self.recent)
        logging.getLogger().addHandler(ring)
        log.info(
            "daemon_starting",
            name=cfg.gateway.name,
            version=self.status.version,
            config=self.config_path,
            buses=len(cfg.buses),
            meters=sum(len(b.meters) for b in cfg.buses),
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                buffer = await self._open_buffer()
                tap = Tap(buffer, self.recent)
                validator = Validator(tap, cfg.validation)
                stack.push_async_callback(self._close_buffer, buffer, tap, validator)
                self.status.tap = tap
                self.status.buffer = buffer
                await self._restore_references(buffer, validator)
                if cfg.http.enabled:
                    self.http = StatusServer(self.status, cfg.http.host, cfg.http.port)
                    try:
                        await self.http.start()
                    except StatusServerError as exc:
                        raise DaemonError(str(exc)) from None
                    stack.push_async_callback(self.http.stop)
                if cfg.embedded_broker.enabled:
                    broker = EmbeddedBroker(cfg.embedded_broker.host, cfg.embedded_broker.port)
                    try:
                        await broker.start()
                    except BrokerStartError as exc:
                        raise DaemonError(str(exc)) from None
                    stack.push_async_callback(broker.stop)
                await self._serve(buffer, tap, validator)
        finally:
            logging.getLogger().removeHandler(ring)
        log.info("daemon_stopped", name=cfg.gateway.name, clean=self.clean)

    async def _open_buffer(self) -> Buffer:
        path = self.buffer_path
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DaemonError(
                f"cannot create the buffer directory {Path(path).parent}: {exc.strerror or exc}"
            ) from None
        try:
            buffer = await Buffer.open(path, self.config.buffer, self.metrics)
        except BufferError as exc:
            reason = str(exc).removeprefix(f"buffer {path}: ")
            raise DaemonError(f"cannot open the buffer at {path}: {reason}") from None
        except OSError as exc:
            raise DaemonError(f"cannot open the buffer at {path}: {exc.strerror or exc}") from None
        return buffer

    async def _restore_references(self, buffer: Buffer, validator: Validator) -> None:
        try:
            refs = await buffer.references()
        except BufferError as exc:  # validation starts without references, as on a first run
            log.error("references_not_restored", error=str(exc))
            return
        count = validator.restore(refs)
        # The newest stored reading per meter: where polling takes up (Scheduler.resume).
        for meter, _key, ts_ms, _value in refs:
            if ts_ms > self._last_stored.get(meter, 0):
                self._last_stored[meter] = int(ts_ms)
        log.info("references_restored", count=count)

    async def _unfinished_gaps(self) -> list[GapRecord]:
        """The gap ledger's gaps, for the backfills an earlier run left unfinished (and the
        last week's finished ones, for ``/status``)."""
        since = int(time.time() * 1000) - RECENT_MS
        try:
            return await load_gaps(self.buffer_path, since_ms=since)
        except BufferError as exc:  # polling starts; those gaps stay open in the ledger
            log.error("gap_ledger_not_read", error=str(exc))
            return []

    async def _close_buffer(self, buffer: Buffer, tap: Tap, validator: Validator) -> None:
        # Commits still in flight (a source cancelled mid-accept) finish first; then the
        # validator's references are kept for the next start.
        try:
            async with asyncio.timeout(self._remaining()):
                await tap.drain()
                await validator.save()
        except TimeoutError:
            self.clean = False
            log.warning("commits_still_in_flight", count=tap.in_flight)
        except BufferError as exc:
            log.error("references_not_saved", error=str(exc))
        await buffer.close()

    async def _serve(self, buffer: Buffer, tap: Tap, validator: Validator) -> None:
        cfg = self.config
        sinks = build_sinks(cfg, self.metrics)
        self.status.sinks = [s.name for s in sinks]
        try:
            async with asyncio.TaskGroup() as tg:
                # A buffer whose committer died would make every later commit hang: the
                # watcher raises instead, and the task group takes the daemon down.
                watcher = tg.create_task(buffer.watch(), name="buffer-watch")
                forwarders = [
                    tg.create_task(
                        Forwarder(buffer, s, self.metrics).run(), name=f"forward:{s.name}"
                    )
                    for s in sinks
                ]
                sources: list[asyncio.Task[Any]] = []
                if cfg.buses:
                    # The polling stack (drivers, pymodbus, pyserial: about 4 MB resident)
                    # is loaded only where there are buses to poll.
                    from gateway.scheduler import Scheduler

                    scheduler = Scheduler(
                        cfg, validator, self.metrics, profile_dirs=self.profile_dirs
                    )
                    self.status.scheduler = scheduler
                    if resumed := scheduler.resume(self._last_stored):
                        log.info("polling_resumed", meters=resumed)
                    self.status.gaps = scheduler.gaps
                    if queued := scheduler.resume_gaps(await self._unfinished_gaps()):
                        log.info("backfill_resumed", gaps=queued)
                    sources.append(tg.create_task(scheduler.run(), name="scheduler"))
                    filed = watch_filed(self.buffer_path, scheduler.resume_gaps)
                    sources.append(tg.create_task(filed, name="gaps"))
                if cfg.ingest is not None:
                    # Ingest submits write jobs itself (a message's sequence mark
                    # commits with its readings); they pass the validator too.
                    ingest = ConcentratorIngest(
                        cfg.ingest,
                        validator,
                        self.metrics,
                        gateway_name=cfg.gateway.name,
                        marks=buffer.marks(),
                    )
                    self.status.ingest = ingest
                    sources.append(tg.create_task(ingest.run(), name="ingest"))
                self.started.set()
                log.info(
                    "daemon_started",
                    name=cfg.gateway.name,
                    sinks=self.status.sinks,
                    status_url=self.http.url if self.http else None,
                )
                await self._stop.wait()
                await self._shutdown(sources, forwarders, buffer, tap)
                watcher.cancel()
        finally:
            await self._close_sinks(sinks)

    async def _close_sinks(self, sinks: Sequence[Sink]) -> None:
        async def close(sink: Sink) -> None:
            try:
                async with asyncio.timeout(min(2.0, self._remaining())):
                    await sink.close()
            except Exception as exc:  # closing must not hide why we stopped
                log.warning(
                    "sink_close_failed", sink=sink.name, error=str(exc) or type(exc).__name__
                )

        await asyncio.gather(*(close(s) for s in sinks))

    async def _shutdown(
        self,
        sources: Sequence[asyncio.Task[Any]],
        forwarders: Sequence[asyncio.Task[Any]],
        buffer: Buffer,
        tap: Tap,
    ) -> None:
        loop = asyncio.get_running_loop()
        budget = self.config.gateway.shutdown_timeout
        start = loop.time()
        self._hard_deadline = start + budget
        deadline = start + budget * 0.8  # the rest is for closing sinks and the buffer
        self.status.stopping = True
        log.info("daemon_stopping", sources=len(sources), sinks=len(forwarders))
        # 1. No new readings: polling and ingest stop, closing buses and sessions.
        await self._cancel(sources, start + budget * 0.4, "sources")
        # 2. What they handed over commits (the tap shields each commit).
        try:
            async with asyncio.timeout_at(deadline):
                await tap.drain()
        except TimeoutError:
            self.clean = False
            log.warning("commits_still_in_flight", count=tap.in_flight)
        # 3. Forwarders get a moment to deliver what is queued; the rest waits
        #    safely in the buffer for the next start.
        flush_until = min(deadline, loop.time() + budget * _FLUSH_SHARE)
        # The buffer has no "delivered" event to wait on; polling its stats is cheap.
        while loop.time() < flush_until and _queued(buffer) > 0:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        left = _queued(buffer)
        if left:
            log.info("readings_left_for_next_start", rows=left)
        await self._cancel(forwarders, deadline, "forwarders")

    async def _cancel(self, tasks: Sequence[asyncio.Task[Any]], deadline: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        pending = {t for t in tasks if not t.done()}
        # Cancel again while any is left: on Python 3.11 ``asyncio.wait_for``
        # swallows a cancellation that lands as its inner wait completes, so a
        # single cancel() can be lost. Every task is cancelled at least once,
        # even when an earlier step used up the time.
        while pending:
            for t in pending:
                t.cancel()
            left = deadline - loop.time()
            _, pending = await asyncio.wait(pending, timeout=max(0.05, min(_RECANCEL_S, left)))
            if left <= _RECANCEL_S:
                break
        if pending:
            self.clean = False
            log.error(
                "shutdown_step_timed_out",
                step=what,
                tasks=sorted(t.get_name() for t in pending),
                stuck_at=[where_suspended(t) for t in pending],
            )


def where_suspended(task: asyncio.Task[Any]) -> str:
    """Where a task is suspended, ``func:line`` outermost first (for a hung shutdown)."""
    parts: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and len(parts) < 12:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            parts.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " > ".join(parts) or "?"


def _queued(buffer: Buffer) -> int:
    """Rows some sink has not confirmed yet (0 if the buffer cannot say)."""
    try:
        stats = buffer.stats()
    except Exception:
        return 0
    return max((s.depth for s in stats.sinks.values()), default=0)
