"""``async with`` over a part's start and stop (gateway/lifecycle.py), with real sockets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.buffer import Buffer, BufferError, WriteJob
from gateway.config.northbound import BufferConfig
from gateway.demo.broker import BrokerStartError, EmbeddedBroker
from gateway.lifecycle import Lifecycle
from gateway.metrics import Metrics
from gateway.status import RecentEvents, StatusModel, StatusServer
from gateway.status.http import StatusServerError

pytestmark = pytest.mark.asyncio


def port_is_free(port: int) -> bool:
    try:
        socket.create_server(("127.0.0.1", port)).close()
    except OSError:
        return False
    return True


class TwoListeners(Lifecycle):
    """Listens on a free port, then on ``second``: a taken ``second`` fails the start
    half way, with the first socket already bound."""

    def __init__(self, second: int) -> None:
        self.second = second
        self.sockets: list[socket.socket] = []
        self.stops = 0

    async def start(self) -> None:
        self.sockets.append(socket.create_server(("127.0.0.1", 0)))
        self.sockets.append(socket.create_server(("127.0.0.1", self.second)))

    async def stop(self) -> None:
        self.stops += 1
        for s in self.sockets:
            s.close()


async def enter_and_record(part: TwoListeners, ran: list[TwoListeners], fail: bool = False) -> None:
    """``async with part``: record what it entered as, and while in, that it listens."""
    async with part as entered:
        ran.append(entered)
        assert all(s.fileno() != -1 for s in part.sockets)
        assert not port_is_free(part.second)
        if fail:
            raise RuntimeError("in the body")


async def test_a_start_that_fails_half_way_is_stopped_before_the_error_goes_on() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        part = TwoListeners(taken.getsockname()[1])
        ran: list[TwoListeners] = []
        with pytest.raises(OSError, match="in use"):
            await enter_and_record(part, ran)
    assert ran == []  # the block's body never ran
    assert part.stops == 1
    [first] = part.sockets
    assert first.fileno() == -1  # closed by stop()


async def test_leaving_the_block_stops_the_part_once_even_on_an_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as spare:
        free = spare.getsockname()[1]
    part = TwoListeners(free)
    ran: list[TwoListeners] = []
    with pytest.raises(RuntimeError, match="in the body"):
        await enter_and_record(part, ran, fail=True)
    assert ran == [part]
    assert part.stops == 1
    assert port_is_free(free)


async def test_the_status_server_and_the_broker_release_their_port_on_exit(
    tmp_path: Path,
) -> None:
    model = StatusModel("gw", Metrics(), RecentEvents(10))
    async with StatusServer(model, "127.0.0.1", 0) as srv:
        port = srv.port
        assert not port_is_free(port)
    assert port_is_free(port)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        with pytest.raises(StatusServerError, match=f"127.0.0.1:{busy}"):
            async with StatusServer(model, "127.0.0.1", busy):
                pass
        with pytest.raises(BrokerStartError, match=f"127.0.0.1:{busy}"):
            async with EmbeddedBroker("127.0.0.1", busy):
                pass


async def test_the_buffer_is_closed_on_exit(tmp_path: Path) -> None:
    path = str(tmp_path / "b.sqlite")
    async with await Buffer.open(path, BufferConfig(), Metrics()) as buf:
        assert buf.stats().rows == 0
    with pytest.raises(BufferError, match="closed"):
        buf.submit(WriteJob())
