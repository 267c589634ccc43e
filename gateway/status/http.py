"""The status HTTP API: ``/healthz``, ``/readyz``, ``/status``, ``/metrics``.

Bound to 127.0.0.1 by default: it has no authentication and tells anyone who
asks which meters hang on which bus. Put a reverse proxy in front to expose it.

The server is the standard library's threading HTTP server, on its own thread,
the way prometheus-client serves its own endpoint (which already loads it).
Each request hands its work to the event loop and waits for the answer, so
the documents are built where the state lives, never while it changes. Two
reasons for not serving from the event loop with aiohttp: importing aiohttp's
server costs about 10 MB of resident memory, an eighth of the daemon's budget
on a small box, for four GET routes asked a few times a minute; and a server
outside the loop can still say that the loop is stuck: ``/healthz`` answers
503 when the loop does not run the request within ``loop_timeout``, where a
server on the loop would not answer at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.lifecycle import Lifecycle
from gateway.logs import get_logger
from gateway.status.report import StatusModel

log = get_logger("status")

JSON = "application/json"
MAX_CONNECTIONS = 32
"""Open connections served at once; more are closed at once (it is a local API)."""

Answer = tuple[int, str, bytes]
"""HTTP status, content type, body."""


class StatusServerError(Exception):
    """The status server could not listen; the message names the address."""


def _json(data: object, status: int = 200) -> Answer:
    return status, JSON, orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)


def healthz(model: StatusModel) -> Answer:
    """Alive: the event loop answers. Restart the process if this fails."""
    return _json({"status": "alive", "name": model.name})


def readyz(model: StatusModel) -> Answer:
    """Ready: buffer writable and buses started; 503 with the reasons otherwise."""
    reasons = model.readiness()
    if reasons:
        return _json({"ready": False, "reasons": reasons}, status=503)
    return _json({"ready": True, "reasons": []})


def status(model: StatusModel) -> Answer:
    """The whole picture as JSON (what ``metergw status`` prints)."""
    return _json(model.snapshot())


def metrics(model: StatusModel) -> Answer:
    """Prometheus text exposition."""
    model.refresh_metrics()
    return 200, CONTENT_TYPE_LATEST, model.metrics.render()


ROUTES: dict[str, Callable[[StatusModel], Answer]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/status": status,
    "/metrics": metrics,
}


class _Server(ThreadingHTTPServer):
    """Keeps what the handlers need, and the open connections to close on stop."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        model: StatusModel,
        loop: asyncio.AbstractEventLoop,
        loop_timeout: float,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.model = model
        self.loop = loop
        self.loop_timeout = loop_timeout
        self.connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._lock:
            full = len(self.connections) >= MAX_CONNECTIONS
            if not full:
                self.connections.add(request)
        if full:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut open (keep-alive) connections so that their threads end."""
        with self._lock:
            open_now = list(self.connections)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def answer(self, path: str) -> Answer:
        """Run the route for ``path`` on the event loop and wait for it."""
        route = ROUTES.get(path)
        if route is None:
            return _json({"error": f"no such path: {path}", "paths": sorted(ROUTES)}, 404)

        async def on_loop() -> Answer:
            return route(self.model)

        try:
            fut = asyncio.run_coroutine_threadsafe(on_loop(), self.loop)
        except RuntimeError:  # the loop is closed: the daemon is going away
            return _json({"error": "the gateway is stopping"}, 503)
        try:
            return fut.result(timeout=self.loop_timeout)
        except TimeoutError:
            fut.cancel()
            reason = f"the event loop did not answer within {self.loop_timeout:g} s"
            log.error("status_loop_stuck", path=path, error=reason)
            return _json({"status": "stuck", "error": reason}, 503)
        except Exception as exc:  # a broken document must not take the server down
            log.exception("status_request_failed", path=path)
            return _json({"error": f"{type(exc).__name__}: {exc}"}, 500)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive for scrapers
    timeout = 30.0
    """Seconds a connection may sit idle or half-sent before it is closed."""
    server_version = "metergw"

    def do_GET(self) -> None:
        code, ctype, body = self.server.answer(urlsplit(self.path).path)
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """No access log: scrapers would fill the journal."""

    def log_error(self, format: str, *args: object) -> None:
        log.info("status_bad_request", client=self.client_address[0], error=format % args)


class StatusServer(Lifecycle):
    """``async with StatusServer(model, host, port) as srv:`` serves until exit."""

    def __init__(
        self,
        model: StatusModel,
        host: str = "127.0.0.1",
        port: int = 8181,
        loop_timeout: float = 10.0,
    ) -> None:
        self.model = model
        self.host = host
        self.port = port
        self.loop_timeout = loop_timeout
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, with the real port once started (``port = 0`` picks one)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen; raise :class:`StatusServerError` naming the address on failure."""
        loop = asyncio.get_running_loop()
        try:
            server = _Server((self.host, self.port), self.model, loop, self.loop_timeout)
        except OSError as exc:
            raise StatusServerError(
                f"status HTTP server cannot listen on {self.host}:{self.port}: "
                f"{exc.strerror or exc}"
            ) from exc
        self.port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever, args=(0.25,), name="metergw-status-http", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        log.info("status_server_started", url=self.url)

    async def stop(self) -> None:
        """Stop listening and close open connections. Safe to call twice."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        # shutdown() waits for serve_forever to notice, up to its poll interval:
        # off the loop, which may have requests of the server's threads to run.
        await asyncio.to_thread(server.shutdown)
        server.close_connections()
        server.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join, 5.0)
