"""Real servers for tests: Mosquitto and VictoriaMetrics on ephemeral ports.

Each server is a small class that starts the Debian binary on 127.0.0.1 with
its own data directory, waits until it answers (polling with a deadline, never
a fixed sleep), and can be stopped, killed and started again on the same port
and data, for outage and restart tests. The fixtures skip with a reason when
the binary is missing (``make test`` installs them as root).

Both can also serve TLS with certificates a test made (tests/certs.py), and
Mosquitto can require client certificates or a password: the ``mosquitto``
and ``victoria_metrics`` fixtures start plain servers; ``start_mosquitto`` and
``start_victoria_metrics`` start them with options.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the certificates need ``cryptography``; plain servers do not
    from tests.certs import CertFiles

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
VICTORIA = shutil.which("victoria-metrics")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(
    predicate: Any, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> None:
    """Poll ``predicate()`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class _Server:
    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError  # pragma: no cover - each server names its own

    def ready(self) -> bool:
        return _port_open(self.port)

    @property
    def pid(self) -> int:
        """The running server's process id."""
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(self._up, timeout=15.0, what=f"{self.name} on port {self.port}")
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"{self.name} did not start: {self.log.read_text()[-2000:]}"
            ) from None

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
        return self.ready()

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), as an operator's restart would."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        wait_until(lambda: not _port_open(self.port), timeout=10.0, what=f"{self.name} to close")

    def kill(self) -> None:
        """SIGKILL: the server dies without cleaning up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class MosquittoServer(_Server):
    """A Mosquitto broker with persistence (so sessions survive a restart).

    Options: ``tls`` (the server's certificate and key) makes the listener
    TLS-only (``mqtts://``); ``require_certificate`` also demands a client
    certificate signed by ``ca_file``, whose common name becomes the user name;
    ``passwords`` (user -> password) turns anonymous access off and checks
    logins against a ``mosquitto_passwd`` file.
    """

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        *,
        tls: CertFiles | None = None,
        ca_file: Path | None = None,
        require_certificate: bool = False,
        passwords: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(workdir)
        if require_certificate and (tls is None or ca_file is None):
            raise ValueError("require_certificate needs tls and ca_file")
        self.tls = tls
        self.ca_file = ca_file
        self.require_certificate = require_certificate
        self.passwords = dict(passwords or {})

    def _security(self) -> str:
        lines = []
        if self.tls is not None:
            lines += [f"certfile {self.tls.cert}", f"keyfile {self.tls.key}"]
            if self.ca_file is not None:
                lines.append(f"cafile {self.ca_file}")
        if self.require_certificate:
            lines += ["require_certificate true", "use_identity_as_username true"]
        if self.passwords:
            if MOSQUITTO_PASSWD is None:
                raise RuntimeError("mosquitto_passwd is not installed")
            pwfile = self.workdir / "mosquitto.passwd"
            pwfile.write_text("")
            for user, password in self.passwords.items():
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", str(pwfile), user, password],
                    check=True,
                    capture_output=True,
                )
            lines.append(f"password_file {pwfile}")
        anonymous = not (self.passwords or self.require_certificate)
        lines.append(f"allow_anonymous {str(anonymous).lower()}")
        # Started as root, Mosquitto switches to its own user before it reads these files
        # and writes its database, and that user cannot enter pytest's private temporary
        # directories (until 2026-12-04 every save failed: "Error saving in-memory
        # database ... Permission denied"). Ignored when not started as root.
        lines.append("user root")
        return "".join(f"{line}\n" for line in lines)

    def command(self) -> list[str]:
        assert MOSQUITTO is not None
        conf = self.workdir / "mosquitto.conf"
        data = self.workdir / "mosquitto-data"
        data.mkdir(exist_ok=True)
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n" + self._security() + "persistence true\n"
            f"persistence_location {data}/\n"
            # Mosquitto's default autosave (every 30 min and at a clean stop), as
            # docs/operations.md deploys it: saving every second cost the broker about a fifth
            # more CPU in bench phase a.
            # A slow subscriber must not lose QoS 1 messages silently (library-notes.md).
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            "message_size_limit 0\n"
        )
        return [MOSQUITTO, "-c", str(conf)]

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls is not None else "mqtt"
        return f"{scheme}://127.0.0.1:{self.port}"


class VictoriaMetricsServer(_Server):
    """VictoriaMetrics taking the InfluxDB v2 write API, deduplicating replays.

    With ``tls`` (certificate and key) it serves HTTPS only; ``ca_file`` is what
    the fixture's own requests (health, export) trust.
    """

    name = "victoria-metrics"

    def __init__(
        self, workdir: Path, *, tls: CertFiles | None = None, ca_file: Path | None = None
    ) -> None:
        super().__init__(workdir)
        self.tls = tls
        self._context = ssl.create_default_context(cafile=ca_file) if tls is not None else None

    def command(self) -> list[str]:
        assert VICTORIA is not None
        tls = []
        if self.tls is not None:
            tls = ["-tls", f"-tlsCertFile={self.tls.cert}", f"-tlsKeyFile={self.tls.key}"]
        return [
            VICTORIA,
            *tls,
            f"-storageDataPath={self.workdir / 'vm-data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            # Same series + timestamp collapse to one sample, as in InfluxDB.
            "-dedup.minScrapeInterval=1ms",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-loggerLevel=ERROR",
        ]

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _open(self, url: str, timeout: float) -> Any:
        return urllib.request.urlopen(url, timeout=timeout, context=self._context)

    def ready(self) -> bool:
        try:
            with self._open(f"{self.url}/health", timeout=0.5) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def force_flush(self) -> None:
        """Make fresh writes visible to queries at once."""
        with self._open(f"{self.url}/internal/force_flush", timeout=10):
            pass

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, Any]]:
        """Every series matching ``match``, as VictoriaMetrics' JSON-lines export."""
        self.force_flush()
        query = urllib.parse.urlencode({"match[]": match, "reduce_mem_usage": "1"})
        with self._open(f"{self.url}/api/v1/export?{query}", timeout=30) as r:
            return [json.loads(line) for line in r.read().splitlines() if line.strip()]

    def samples(self, match: str = '{__name__!=""}') -> int:
        """How many samples are stored for ``match``, after deduplication."""
        return sum(len(s["values"]) for s in self.export(match))


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    """A fresh Mosquitto broker for one test."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (make test installs it as root)")
    server = MosquittoServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetricsServer]:
    """A fresh VictoriaMetrics for one test."""
    if VICTORIA is None:
        pytest.skip("victoria-metrics is not installed (make test installs it as root)")
    server = VictoriaMetricsServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def start_mosquitto(tmp_path: Path) -> Iterator[Callable[..., MosquittoServer]]:
    """Start Mosquitto brokers with options (see :class:`MosquittoServer`), each in its
    own directory; every one is killed after the test."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (make test installs it as root)")
    servers: list[MosquittoServer] = []

    def start(**options: Any) -> MosquittoServer:
        workdir = tmp_path / f"mosquitto-{len(servers)}"
        workdir.mkdir()
        server = MosquittoServer(workdir, **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def start_victoria_metrics(tmp_path: Path) -> Iterator[Callable[..., VictoriaMetricsServer]]:
    """Start VictoriaMetrics with options (``tls``, ``ca_file``); killed after the test."""
    if VICTORIA is None:
        pytest.skip("victoria-metrics is not installed (make test installs it as root)")
    servers: list[VictoriaMetricsServer] = []

    def start(**options: Any) -> VictoriaMetricsServer:
        workdir = tmp_path / f"victoria-metrics-{len(servers)}"
        workdir.mkdir()
        server = VictoriaMetricsServer(workdir, **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()
