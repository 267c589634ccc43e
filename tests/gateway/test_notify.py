"""sd_notify over a real AF_UNIX datagram socket, as systemd listens for it."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.notify import Notifier


def _fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n"))


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket on a filesystem path (short: sun_path holds 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sdn", dir="/tmp") as d:
        path = str(Path(d) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(5)
            yield sock, path


@pytest.fixture
def abstract_listener() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in Linux's abstract namespace, named as systemd names it (``@...``)."""
    name = f"metergw-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        yield sock, "@" + name


def test_each_state_is_one_datagram_of_key_value_lines(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("serving 3 buses")
    assert _fields(sock.recv(4096)) == {"READY": "1", "STATUS": "serving 3 buses"}
    assert n.status("buffer 12 rows\nbehind")
    # One line only: a newline would start a field of its own.
    assert _fields(sock.recv(4096)) == {"STATUS": "buffer 12 rows behind"}
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.reloading("reloading /etc/metergw/metergw.toml")
    reload = _fields(sock.recv(4096))
    assert reload["RELOADING"] == "1"
    assert reload["STATUS"] == "reloading /etc/metergw/metergw.toml"
    assert abs(int(reload["MONOTONIC_USEC"]) - time.monotonic_ns() // 1000) < 60_000_000
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket_names_start_with_at(
    abstract_listener: tuple[socket.socket, str],
) -> None:
    sock, name = abstract_listener
    assert Notifier.from_env({"NOTIFY_SOCKET": name}).ready()
    assert sock.recv(4096) == b"READY=1"


def test_without_systemd_every_call_is_a_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert not n.ready("x")
    assert not n.watchdog()
    assert n.watchdog_interval() is None


def test_a_socket_nobody_listens_on_is_reported_not_raised(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "gone"))
    assert n.ready() is False
    assert n.watchdog() is False


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        # Meant for another process (this one inherited the environment).
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_period_for_this_process(
    env: dict[str, str], interval: float | None
) -> None:
    assert Notifier.from_env({"NOTIFY_SOCKET": "/run/x", **env}).watchdog_interval() == interval


@pytest.mark.asyncio
async def test_keep_alive_pings_until_cancelled(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    # A 20 ms period: pings every 10 ms.
    n = Notifier(path, watchdog_usec=20_000)
    task = asyncio.create_task(n.keep_alive())
    try:
        for _ in range(3):
            assert await asyncio.to_thread(sock.recv, 4096) == b"WATCHDOG=1"
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.asyncio
async def test_keep_alive_returns_at_once_without_a_watchdog(
    listener: tuple[socket.socket, str],
) -> None:
    _, path = listener
    async with asyncio.timeout(5):
        await Notifier(path).keep_alive()
