"""``metergw read`` names why a link failed and refuses nonsensical options."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

READ_DLT = ["read", "--addr", "000000000001", "--di", "00010000"]
READ_MODBUS = ["read", "--protocol", "modbus-tcp", "--unit", "1", "--profile", "sdm630"]


def metergw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: connection attempts hang (the
    kernel drops the handshake), as to a host behind a firewall that drops packets."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = int(server.getsockname()[1])
        for _ in range(3):
            client = stack.enter_context(socket.socket())
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(("127.0.0.1", port))
        yield port


@pytest.mark.parametrize("command", [READ_DLT, READ_MODBUS], ids=["dlt645", "modbus"])
def test_connection_refused_is_named(command: list[str], closed_port: int) -> None:
    out = metergw(*command, "--tcp", f"127.0.0.1:{closed_port}", "--timeout", "0.5")
    assert out.returncode == 1
    assert out.stderr.endswith(f" on 127.0.0.1:{closed_port}: cannot connect: connection refused\n")
    assert "Failed to connect" not in out.stderr  # pymodbus's own log line, kept quiet
    assert out.stdout == ""


@pytest.mark.parametrize(
    ("command", "after"), [(READ_DLT, "1 s"), (READ_MODBUS, "0.5 s")], ids=["dlt645", "modbus"]
)
def test_a_connect_timeout_is_named(command: list[str], after: str, unanswered_port: int) -> None:
    out = metergw(*command, "--tcp", f"127.0.0.1:{unanswered_port}", "--timeout", "0.5")
    assert out.returncode == 1
    assert out.stderr.endswith(
        f" on 127.0.0.1:{unanswered_port}: cannot connect: timed out after {after}\n"
    )


def test_a_missing_serial_port_is_named() -> None:
    out = metergw(*READ_DLT, "--serial", "/dev/metergw-no-such-port")
    assert out.returncode == 1
    assert out.stderr == (
        "metergw read: meter 000000000001 on /dev/metergw-no-such-port: "
        "cannot connect: no such file or directory\n"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--timeout", "-1"], "argument --timeout: -1: must be above 0 s (at most 3600 s)"),
        (["--timeout", "0"], "argument --timeout: 0: must be above 0 s"),
        (["--timeout", "soon"], "argument --timeout: 'soon' is not a number of seconds"),
        (["--retries", "-2"], "argument --retries: -2: retries must be 0..10"),
        (["--baud", "0"], "argument --baud: 0: the baud rate must be 50..4000000"),
        (["--addr", "12345"], "--addr: a DL/T 645 meter address is 12 decimal digits"),
        (["--tcp", "dtu-7"], "--tcp 'dtu-7': expected HOST:PORT"),
    ],
)
def test_nonsensical_options_are_refused(
    options: list[str], message: str, closed_port: int
) -> None:
    args = [*READ_DLT, "--tcp", f"127.0.0.1:{closed_port}"]
    for name, value in zip(options[::2], options[1::2], strict=True):
        if name in args:
            args[args.index(name) + 1] = value
        else:
            args += [name, value]
    out = metergw(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_a_modbus_unit_out_of_range_is_refused(closed_port: int) -> None:
    out = metergw(
        "read", "--protocol", "modbus-tcp", "--unit", "300", "--profile", "sdm630",
        "--tcp", f"127.0.0.1:{closed_port}",
    )  # fmt: skip
    assert out.returncode == 2
    assert "argument --unit: 300: a Modbus unit id must be 0..247" in out.stderr
