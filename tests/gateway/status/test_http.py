"""The status server itself: routes, a stuck event loop, a taken port, shutdown."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from pathlib import Path

import pytest

from gateway.metrics import Metrics
from gateway.status import RecentEvents, StatusModel, StatusServer, StatusServerError

pytestmark = pytest.mark.timeout(30)


def model(tmp_path: Path) -> StatusModel:
    return StatusModel("gw-http", Metrics(), RecentEvents(), buffer_path=str(tmp_path / "b.sqlite"))


def get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    """A GET from a thread of its own, as a scraper would send it."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read()


@pytest.mark.asyncio
async def test_routes_answer_and_unknown_paths_are_404(tmp_path: Path) -> None:
    async with StatusServer(model(tmp_path), "127.0.0.1", 0) as srv:
        code, body = await asyncio.to_thread(get, srv.port, "/healthz")
        assert (code, json.loads(body)) == (200, {"status": "alive", "name": "gw-http"})
        code, body = await asyncio.to_thread(get, srv.port, "/readyz?verbose=1")
        assert code == 503
        assert "buffer is not open" in json.loads(body)["reasons"]
        code, body = await asyncio.to_thread(get, srv.port, "/nope")
        assert code == 404
        assert json.loads(body)["paths"] == ["/healthz", "/metrics", "/readyz", "/status"]
        code, body = await asyncio.to_thread(get, srv.port, "/metrics")
        assert code == 200
        assert b"metergw_build_info" in body


@pytest.mark.asyncio
async def test_keep_alive_serves_several_requests_on_one_connection(tmp_path: Path) -> None:
    async with StatusServer(model(tmp_path), "127.0.0.1", 0) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            first = await asyncio.to_thread(get, srv.port, "/healthz", conn)
            sock = conn.sock
            second = await asyncio.to_thread(get, srv.port, "/status", conn)
            assert conn.sock is sock, "the server closed a keep-alive connection"
        finally:
            conn.close()
    assert first[0] == second[0] == 200
    assert json.loads(second[1])["gateway"]["name"] == "gw-http"


@pytest.mark.asyncio
async def test_healthz_is_503_while_the_event_loop_is_stuck(tmp_path: Path) -> None:
    async with StatusServer(model(tmp_path), "127.0.0.1", 0, loop_timeout=0.3) as srv:
        loop = asyncio.get_running_loop()

        def later() -> tuple[int, bytes]:
            time.sleep(0.2)  # asked once the loop below is blocked
            return get(srv.port, "/healthz")

        asked = loop.run_in_executor(None, later)
        time.sleep(1.0)  # noqa: ASYNC251 -- blocks the loop on purpose
        code, body = await asked
        assert code == 503
        assert "did not answer within 0.3 s" in json.loads(body)["error"]
        code, _ = await asyncio.to_thread(get, srv.port, "/healthz")
        assert code == 200  # and alive again once the loop runs


@pytest.mark.asyncio
async def test_a_taken_port_is_an_error_naming_the_address(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        srv = StatusServer(model(tmp_path), "127.0.0.1", port)
        with pytest.raises(StatusServerError, match=f"cannot listen on 127.0.0.1:{port}: "):
            await srv.start()
        await srv.stop()  # nothing started: still safe


@pytest.mark.asyncio
async def test_stop_closes_the_port_and_open_connections(tmp_path: Path) -> None:
    srv = StatusServer(model(tmp_path), "127.0.0.1", 0)
    await srv.start()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    assert (await asyncio.to_thread(get, srv.port, "/healthz", conn))[0] == 200
    await srv.stop()
    await srv.stop()
    assert conn.sock is not None
    assert await asyncio.to_thread(conn.sock.recv, 1) == b"", "keep-alive connection left open"
    conn.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
