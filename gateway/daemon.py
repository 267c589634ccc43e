"""The daemon: every part wired together, started in order, stopped in order.

Start: open the buffer (nothing is polled before readings have somewhere to
go), build the write path (validation, the buffer, the status tap listening
to its commits: gateway/writepath.py), start the status
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
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from gateway.buffer import Buffer, BufferError, WriteJob
from gateway.config import Config
from gateway.config.loader import profile_dirs_for
from gateway.config.southbound import meter_thresholds
from gateway.forward import Sink
from gateway.gaps import GapRecord, load_gaps
from gateway.gaps.ledger import RECENT_MS
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.model import Event, EventKind
from gateway.notify import Notifier
from gateway.services import Services
from gateway.status import RecentEvents, RecentLogHandler, StatusModel, StatusServer, Tap
from gateway.status.http import StatusServerError
from gateway.validate import Validator
from gateway.writepath import WritePath

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
        self._reload = asyncio.Event()
        self._hard_deadline: float | None = None
        self.notifier = Notifier.from_env()
        """systemd's notify socket (a no-op outside a ``Type=notify`` unit)."""

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
                tap = Tap(self.recent)
                per_meter = meter_thresholds(cfg.validation, cfg.buses, self.profile_dirs)
                validator = Validator(cfg.validation, per_meter=per_meter)
                writes = WritePath(buffer, validator, listeners=(tap,))
                stack.push_async_callback(self._close_buffer, buffer, writes)
                self.status.tap = tap
                self.status.writes = writes
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
                    from gateway.demo.broker import BrokerStartError, EmbeddedBroker  # [demo] extra

                    broker = EmbeddedBroker(cfg.embedded_broker.host, cfg.embedded_broker.port)
                    try:
                        await broker.start()
                    except BrokerStartError as exc:
                        raise DaemonError(str(exc)) from None
                    stack.push_async_callback(broker.stop)
                await self._serve(buffer, writes)
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

    async def _close_buffer(self, buffer: Buffer, writes: WritePath) -> None:
        # Commits still in flight (a source cancelled mid-accept) finish first; then the
        # validator's references are kept for the next start.
        try:
            async with asyncio.timeout(self._remaining()):
                await writes.drain()
                await writes.save()
        except TimeoutError:
            self.clean = False
            log.warning("commits_still_in_flight", count=writes.in_flight)
        except BufferError as exc:
            log.error("references_not_saved", error=str(exc))
        await buffer.close()

    async def _serve(self, buffer: Buffer, writes: WritePath) -> None:
        cfg = self.config
        services: Services | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                # A buffer whose committer died would make every later commit hang: the
                # watcher raises instead, and the task group takes the daemon down.
                watcher = tg.create_task(buffer.watch(), name="buffer-watch")
                # Pings systemd's watchdog from this loop: a stalled loop gets restarted.
                alive = tg.create_task(self.notifier.keep_alive(), name="watchdog")
                services = Services(
                    tg, buffer, writes, self.metrics, self.status, self.profile_dirs, cfg
                )
                services.start(self._last_stored, await self._unfinished_gaps())
                self.started.set()
                log.info(
                    "daemon_started",
                    name=cfg.gateway.name,
                    sinks=self.status.sinks,
                    status_url=self.http.url if self.http else None,
                )
                self.notifier.ready(self._status_line(services))
                while True:
                    await _first(self._stop.wait(), self._reload.wait())
                    if self._stop.is_set():
                        break
                    self._reload.clear()
                    await self._apply_reload(services, writes)
                self.notifier.stopping("stopping")
                await self._shutdown(services.sources, services.forwarders, buffer, writes)
                watcher.cancel()
                alive.cancel()
        finally:
            if services is not None:
                await self._close_sinks(services.sink_parts)

    def request_reload(self) -> None:
        """Read the config file again and apply what changed (SIGHUP; idempotent)."""
        log.info("reload_requested", config=self.config_path)
        self._reload.set()

    async def _apply_reload(self, services: Services, writes: WritePath) -> None:
        """Check the config file again; apply it if valid, else keep running as before."""
        from gateway.config import check_config_file
        from gateway.reload import plan_reload

        path = self.config_path
        self.notifier.reloading(f"reloading {path}")
        now_ms = int(time.time() * 1000)
        checked = await asyncio.to_thread(check_config_file, path) if path else None
        if checked is None or checked.config is None:
            problems = [str(p) for p in checked.problems] if checked else ["no config file"]
            for problem in problems:
                log.error("config_reload_problem", problem=problem)
            log.error("config_reload_rejected", config=path, problems=len(problems))
            event = Event(
                EventKind.CONFIG_RELOAD_REJECTED,
                now_ms,
                self.config.gateway.name,
                f"{len(problems)} problem(s) in the new config, the running one is kept: "
                f"{problems[0]}",
                {"config": path, "problems": "\n".join(problems)[:4000]},
            )
        else:
            plan = plan_reload(self.config, checked.config)
            try:
                await services.apply(plan)
            except Exception as exc:  # a part that cannot start: say so, keep the rest
                log.exception("config_reload_failed", config=path)
                plan_text = f"reload failed: {exc}"
            else:
                plan_text = plan.describe()
                self.config = plan.config
                # Meters' and profiles' thresholds follow their buses; [validation] waits.
                cfg = self.config
                writes.validator.use_thresholds(
                    meter_thresholds(cfg.validation, cfg.buses, self.profile_dirs)
                )
            log.info("config_reloaded", config=path, applied=plan_text)
            if plan.needs_restart:
                log.warning("config_change_needs_restart", sections=list(plan.needs_restart))
            event = Event(
                EventKind.CONFIG_RELOADED,
                now_ms,
                self.config.gateway.name,
                plan_text,
                {"config": path},
            )
        # The event is kept like any other; the reload does not wait for its commit.
        writes.submit(WriteJob(events=[event], origin="daemon")).add_done_callback(_logged)
        self.notifier.ready(self._status_line(services))

    def _status_line(self, services: Services) -> str:
        """One line for ``systemctl status``."""
        sched = services.scheduler
        buses = len(sched.buses) if sched is not None else 0
        ingest = "ingest on" if services.ingest is not None else "no ingest"
        return f"serving: {buses} bus(es), {ingest}, sinks {', '.join(services.sinks) or 'none'}"

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
        writes: WritePath,
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
        # 2. What they handed over commits (a commit outlives its cancelled source).
        try:
            async with asyncio.timeout_at(deadline):
                await writes.drain()
        except TimeoutError:
            self.clean = False
            log.warning("commits_still_in_flight", count=writes.in_flight)
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


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Return when the first of ``waits`` returns; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def _logged(fut: asyncio.Future[WriteJob]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("event_not_stored", error=str(fut.exception()))


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
