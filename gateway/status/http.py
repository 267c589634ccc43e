"""The status HTTP API: ``/healthz``, ``/readyz``, ``/status``, ``/metrics``.

Bound to 127.0.0.1 by default: it has no authentication and tells anyone who
asks which meters hang on which bus. Put a reverse proxy in front to expose it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.logs import get_logger
from gateway.status.report import StatusModel

log = get_logger("status")

STATUS_KEY = web.AppKey("status", StatusModel)


class StatusServerError(Exception):
    """The status server could not listen; the message names the address."""


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
    )


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers. Restart the process if this fails."""
    status = request.app[STATUS_KEY]
    return _json({"status": "alive", "name": status.name})


async def readyz(request: web.Request) -> web.Response:
    """Ready: buffer writable and buses started; 503 with the reasons otherwise."""
    reasons = request.app[STATUS_KEY].readiness()
    if reasons:
        return _json({"ready": False, "reasons": reasons}, status=503)
    return _json({"ready": True, "reasons": []})


async def status(request: web.Request) -> web.Response:
    """The whole picture as JSON (what ``metergw status`` prints)."""
    return _json(request.app[STATUS_KEY].snapshot())


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    model = request.app[STATUS_KEY]
    model.refresh_metrics()
    return web.Response(body=model.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(model: StatusModel) -> web.Application:
    """The aiohttp application serving ``model``."""
    app = web.Application()
    app[STATUS_KEY] = model
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    return app


class StatusServer:
    """``async with StatusServer(model, host, port) as srv:`` serves until exit."""

    def __init__(self, model: StatusModel, host: str = "127.0.0.1", port: int = 8181) -> None:
        self.model = model
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL, with the real port once started (``port = 0`` picks one)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen; raise :class:`StatusServerError` naming the address on failure."""
        runner = web.AppRunner(
            build_app(self.model), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise StatusServerError(
                f"status HTTP server cannot listen on {self.host}:{self.port}: "
                f"{exc.strerror or exc}"
            ) from exc
        self._runner = runner
        for addr in runner.addresses:
            if isinstance(addr, tuple):
                self.port = int(addr[1])
                break
        log.info("status_server_started", url=self.url)

    async def stop(self) -> None:
        """Stop listening and close open connections. Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await asyncio.wait_for(runner.cleanup(), timeout=5.0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
