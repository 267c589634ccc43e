"""InfluxDB v2 write API sink (InfluxDB 2.x, VictoriaMetrics, anything that speaks it).

influxdb-client's synchronous ``WriteApi`` runs in a worker thread, given one
pre-joined line-protocol string per batch: that is its fastest path (a list of
lines or ``Point`` objects is 3-15x slower, see library-notes.md), the event
loop stays free for ingest and commits while a large POST or a slow server is
waited on, and the synchronous API does no retrying or batching of its own, so
every retry decision is ours. Errors, by HTTP status:

- no connection, 5xx, 429: :class:`SinkUnavailable` (429/503 with Retry-After);
- 400, 413, 422: the batch is split in halves until the refused points are
  alone; only those are reported as rejected (quarantined), the rest written;
- 401, 403: :class:`SinkAuthError` (alarm; the data stays buffered).

``https://`` URLs use the ``tls`` table's CA, client certificate and key (or
the system trust store); a refused token or an untrusted certificate is kept
as ``refused`` for ``/readyz`` until a write goes through.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any, Self

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from gateway.buffer import Batch
from gateway.config.base import Duration
from gateway.config.model import Config
from gateway.config.northbound import (
    SinkSection,
    check_tls_scheme,
    fill_secret,
    resolve_secret_file,
)
from gateway.config.security import (
    TlsConfig,
    check_url,
    client_ssl_context,
    read_secret,
    split_url_credentials,
)
from gateway.forward.lineproto import event_lines, reading_lines
from gateway.forward.sink import SinkAuthError, SinkUnavailable, WriteResult
from gateway.ingest.login import describe_connect_error
from gateway.logs import get_logger
from gateway.metrics import Metrics

log = get_logger("forward")

_MS: Any = WritePrecision.MS  # a str constant the library's annotations call an enum
_SPLIT = frozenset({400, 413, 422})
_AUTH = frozenset({401, 403})


class InfluxSinkConfig(SinkSection):
    """``[sinks.influx]``: InfluxDB v2 write API (or anything that speaks it)."""

    url: str
    """``http://host:8086`` or ``https://...`` (TLS, refined by ``tls``)."""
    token: SecretStr | None = None
    """API token, inline or ``${VAR}``; or use ``token_file``. Never logged."""
    token_file: str | None = None
    """File holding the token (one line); a bare name is a systemd credential in
    ``$CREDENTIALS_DIRECTORY``, as for ``password_file``."""
    org: str
    bucket: str
    measurement: str = Field(default="meter", min_length=1)
    batch_size: int = Field(default=5000, gt=0)
    """Most points per write request."""
    flush_interval: Duration = 1.0
    """Longest a point waits for a fuller batch."""
    timeout: Duration = 10.0
    """HTTP timeout of one write."""
    tls: TlsConfig | None = None
    """CA file, client certificate and key, ``insecure``; needs an ``https://`` URL."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if split_url_credentials(url)[1:] != (None, None):
            raise ValueError("credentials in the url are not used: set token or token_file")
        return check_url(url, ("http", "https"), "an HTTP")

    @field_validator("token_file")
    @classmethod
    def _token_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("token") is not None:
            raise ValueError("token is set too; give one of them")
        return resolve_secret_file(value, info)

    @field_validator("tls")
    @classmethod
    def _tls_needs_https(cls, value: TlsConfig | None, info: ValidationInfo) -> TlsConfig | None:
        return check_tls_scheme(value, info, "https")

    @model_validator(mode="after")
    def _read_token_file(self) -> Self:
        if self.token_file is not None:
            fill_secret(self, "token", read_secret(Path(self.token_file)))
        if self.token is None:
            raise ValueError("token or token_file is required")
        return self

    def token_value(self) -> str:
        """The API token (validation made sure there is one)."""
        return self.token.get_secret_value() if self.token is not None else ""

    @property
    def uses_tls(self) -> bool:
        """True for ``https://``."""
        return self.url.startswith("https://")


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _retry_after(exc: ApiException) -> float | None:
    raw = getattr(exc, "retry_after", None)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error under a failed request, if there is one.

    influxdb-client raises ``ApiException(status=0)`` while handling urllib3's
    ``SSLError``, which wraps the ``ssl`` error in its arguments: search the
    chain (context, cause, a ``reason``, the arguments), a few levels deep.
    """
    todo: list[BaseException] = [exc]
    for _ in range(12):
        if not todo:
            return None
        seen = todo.pop(0)
        if isinstance(seen, ssl.SSLError):
            return seen
        linked = [seen.__cause__, seen.__context__, getattr(seen, "reason", None), *seen.args]
        todo += [e for e in linked if isinstance(e, BaseException)]
    return None


class InfluxSink:
    """Writes readings (measurement from config) and events (``metergw_event``)."""

    def __init__(self, config: InfluxSinkConfig, metrics: Metrics, name: str = "influx") -> None:
        self.name = name
        self.batch_size = config.batch_size
        self.flush_interval = config.flush_interval
        self._config = config
        self._metrics = metrics
        self.refused: str | None = None
        """Why the server does not take our writes (token refused, TLS failed), for ``/readyz``."""
        tls: dict[str, Any] = {}
        if config.uses_tls:
            # Our own context carries the CA, the client certificate and ``insecure``;
            # verify_ssl must agree with it (urllib3 sets the context's verify mode from it).
            insecure = config.tls is not None and config.tls.insecure
            tls = {"ssl_context": client_ssl_context(config.tls), "verify_ssl": not insecure}
            if insecure:
                log.warning("tls_verification_disabled", url=config.url, part=f"sink {name}")
                # Said once here; urllib3 would repeat it as a Python warning per request.
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._client = InfluxDBClient(
            url=config.url,
            token=config.token_value(),
            org=config.org,
            timeout=int(config.timeout * 1000),
            **tls,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    @classmethod
    def from_config(cls, section: InfluxSinkConfig, config: Config, metrics: Metrics) -> Self:
        """The sink of a ``[sinks.influx]`` section."""
        return cls(section, metrics)

    def _post(self, body: str) -> None:
        try:
            self._api.write(
                bucket=self._config.bucket,
                org=self._config.org,
                record=body,
                write_precision=_MS,
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            if status == 0 and (tls := _tls_error(exc)) is not None:
                self.refused = f"{self._config.url}: {describe_connect_error(tls)}"
                raise SinkUnavailable(self.refused, None, "tls") from None
            message = str(getattr(exc, "message", "") or exc.reason or "")[:300]
            if status in _SPLIT:
                self.refused = None  # the server took our token; it refused the points
                raise _Refused(f"HTTP {status}: {message}") from None
            if status in _AUTH:
                self.refused = f"{self._config.url} refused the token: HTTP {status}: {message}"
                raise SinkAuthError(self.refused) from None
            kind = "throttled" if status == 429 else f"http_{status // 100}xx" if status else "io"
            raise SinkUnavailable(
                f"{self._config.url}: HTTP {status}: {message}", _retry_after(exc), kind
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            tls = _tls_error(exc)
            if tls is not None:
                self.refused = f"{self._config.url}: {describe_connect_error(tls)}"
                raise SinkUnavailable(self.refused, None, "tls") from None
            raise SinkUnavailable(f"{self._config.url}: {exc}", None, "connection") from None
        self.refused = None

    async def write(self, batch: Batch) -> WriteResult:
        """Write the batch as one request; bisect around points the server refuses."""
        lines = reading_lines(self._config.measurement, batch.readings)
        seqs: list[int] = [r[0] for r in batch.readings]
        if batch.events:
            lines += event_lines(batch.events)
            seqs += [e[0] for e in batch.events]
        if not lines:
            return WriteResult(0)
        rejected: dict[int, str] = {}
        await self._write_part(lines, seqs, rejected)
        return WriteResult(len(lines) - len(rejected), rejected)

    async def _write_part(
        self, lines: list[str], seqs: list[int], rejected: dict[int, str]
    ) -> None:
        try:
            await asyncio.to_thread(self._post, "\n".join(lines))
        except _Refused as exc:
            if len(lines) == 1:
                rejected[seqs[0]] = exc.reason
                return
            self._metrics.sink_errors.labels(sink=self.name, kind="refused").inc()
            half = len(lines) // 2
            await self._write_part(lines[:half], seqs[:half], rejected)
            await self._write_part(lines[half:], seqs[half:], rejected)

    async def close(self) -> None:
        """Close the HTTP pool."""
        client: Any = self._client
        await asyncio.to_thread(client.close)
