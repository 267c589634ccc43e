"""``metergw status``: fits a terminal, is not wrapped through a pipe, takes a bare
``host:port`` for ``--url``."""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway.metrics import Metrics
from gateway.status import RecentEvents, StatusModel
from gateway.status.http import StatusServer

pytestmark = pytest.mark.timeout(60)

REASON = "the meter answered with a frame whose checksum does not match " * 3
"""A reason far wider than 80 columns."""


@pytest_asyncio.fixture
async def server() -> AsyncIterator[StatusServer]:
    recent = RecentEvents()
    subject = "rs485-line-on-the-far-side-of-the-substation"
    recent.add_problem("link_lost", "warning", subject, REASON)
    async with StatusServer(StatusModel("gw", Metrics(), recent), "127.0.0.1", 0) as srv:
        yield srv


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def _on_a_terminal(args: list[str], columns: int) -> tuple[int, str]:
    """Run ``args`` with stdout on a pty of ``columns`` x 40; (exit status, output)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(args, stdout=slave, stderr=subprocess.PIPE, env=_env())
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode()


@pytest.mark.asyncio
async def test_status_through_a_pipe_is_not_wrapped(server: StatusServer) -> None:
    bare = server.url.removeprefix("http://")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "status", "--url", bare,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "\x1b[" not in text  # no colour codes into a file
    line = next(line for line in text.splitlines() if "link_lost" in line)
    assert REASON.strip() in line
    assert max(len(line) for line in text.splitlines()) > 80


@pytest.mark.asyncio
async def test_status_fits_its_terminal(server: StatusServer) -> None:
    args = [sys.executable, "-m", "gateway", "status", "--url", server.url]
    code, text = await asyncio.to_thread(_on_a_terminal, args, 72)
    assert code == 0, text
    plain = [_strip_ansi(line) for line in text.replace("\r\n", "\n").splitlines()]
    assert "Recent events" in "\n".join(plain)
    assert max(len(line) for line in plain) <= 72


def _strip_ansi(line: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", line)
