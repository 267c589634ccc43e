"""A tiny real HTTP server speaking the InfluxDB v2 write API, with scripted refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest_asyncio
from aiohttp import web

from gateway.metrics import Metrics


def sink_errors(metrics: Metrics, sink: str, kind: str) -> float:
    """``metergw_sink_errors_total`` for one sink and kind (0 before the first)."""
    value = metrics.registry.get_sample_value(
        "metergw_sink_errors_total", {"sink": sink, "kind": kind}
    )
    return value or 0.0


@dataclass
class WriteServer:
    """Stores accepted lines; refuses per its settings."""

    url: str = ""
    lines: list[str] = field(default_factory=list)
    requests: int = 0
    reject_marker: str | None = None
    """A request with a line containing this gets 400 (the whole request is refused)."""
    status_queue: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    """Statuses to answer first, one per request, before behaving normally."""
    auth_ok: bool = True


@pytest_asyncio.fixture
async def write_server() -> AsyncIterator[WriteServer]:
    state = WriteServer()

    async def write(request: web.Request) -> web.Response:
        state.requests += 1
        body = await request.text()
        if state.status_queue:
            status, headers = state.status_queue.pop(0)
            return web.json_response(
                {"message": f"scripted {status}"}, status=status, headers=headers
            )
        if not state.auth_ok:
            return web.json_response({"message": "unauthorized access"}, status=401)
        lines = body.splitlines()
        if state.reject_marker and any(state.reject_marker in ln for ln in lines):
            return web.json_response({"message": "unable to parse points"}, status=400)
        state.lines.extend(lines)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/v2/write", write)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()
