"""Northbound sections: the buffer, concentrator ingest and the sinks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from pydantic import (
    AwareDatetime,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.config.base import ConfigPath, Duration, Section
from gateway.config.security import (
    TlsConfig,
    check_url,
    credential_hint,
    read_secret,
    resolve_credential_file,
    split_url_credentials,
)

_MQTT_SCHEMES = ("mqtt", "mqtts")
_HTTP_SCHEMES = ("http", "https")


def _secret_file(value: str | None, info: ValidationInfo) -> str | None:
    """Resolve a ``*_file`` secret and check it can be read (the error names the key)."""
    if value is None:
        return None
    path = resolve_credential_file(value, info)
    read_secret(path, credential_hint(value))
    return str(path)


def _tls_scheme(value: TlsConfig | None, info: ValidationInfo, scheme: str) -> TlsConfig | None:
    url = info.data.get("url")
    if value is not None and isinstance(url, str) and not url.startswith(f"{scheme}://"):
        plain = url.partition("://")[0]
        raise ValueError(f"is set but the url is {plain}:// (use {scheme}:// for TLS)")
    return value


def _fill(model: Section, name: str, value: SecretStr) -> None:
    # The models are frozen; a secret read from its file is filled in once, during
    # validation, so that every user of the config finds it in one place.
    object.__setattr__(model, name, value)


class BufferConfig(Section):
    """``[buffer]``: the durable SQLite store every reading passes through."""

    path: ConfigPath | None = None
    """Database file; defaults to ``{gateway.state_dir}/buffer.sqlite``."""
    max_bytes: int = Field(default=2 * 1024**3, gt=0)
    """Disk budget; past it the oldest rows are dropped, counted and alarmed."""
    commit_interval: Duration = 0.05
    """Kept for older configs and ignored: the buffer commits on demand (as soon as it has
    work and the previous commit finished), so no reading waits for a timer."""
    commit_max_rows: int = Field(default=5000, gt=0)
    """Most rows in one group commit; more waiting rows commit in the next group."""


class MqttBroker(Section):
    """How to reach an MQTT broker.

    ``mqtt://host:1883``, or ``mqtts://host:8883`` for TLS (verified against the
    system's trust store, or ``tls.ca_file``). Credentials: ``username`` with
    ``password`` (inline or ``${VAR}``) or ``password_file``; or written into the
    URL (``mqtt://user:pass@host``), where they are used to log in and then
    removed, so the URL is never shown with them. A refused login is logged as
    an error, raises an ``ingest_login_refused`` event (ingest) or a
    ``sink_auth_failed`` event (sink), and makes ``/readyz`` fail until a login
    succeeds.

    Under systemd, keep the password in a root-only file and hand it to the
    service as a credential: ``LoadCredential=mqtt-password:/etc/metergw/mqtt-password``
    in the unit and ``password_file = "mqtt-password"`` here (the service reads
    its copy from ``$CREDENTIALS_DIRECTORY``; ``DynamicUser=`` needs no access
    to /etc/metergw).
    """

    url: str
    """``mqtt://host:port`` or ``mqtts://host:port`` (TLS; port 8883 when not given)."""
    username: str | None = None
    password: SecretStr | None = None
    """Never logged; prefer ``${VAR}`` or ``password_file`` to writing it here."""
    password_file: str | None = None
    """File holding the password (one line; a final newline is ignored). A bare name,
    e.g. ``mqtt-password``, is a systemd credential, looked up in
    ``$CREDENTIALS_DIRECTORY``; other paths are relative to the config file."""
    client_id: str | None = None
    keepalive: int = Field(default=30, ge=5)
    tls: TlsConfig | None = None
    """CA file, client certificate and key, ``insecure``; needs an ``mqtts://`` URL."""

    @model_validator(mode="before")
    @classmethod
    def _credentials_from_url(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        url, user, password = split_url_credentials(data["url"])
        if user is None and password is None:
            return data
        data = {**data, "url": url}
        if user is not None:
            if data.get("username") not in (None, user):
                raise ValueError("url: its user name differs from username; give one")
            data["username"] = user
        if password is not None:
            if data.get("password") is not None or data.get("password_file") is not None:
                raise ValueError("url: has a password and so has password or password_file")
            data["password"] = password
        return data

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        return check_url(url, _MQTT_SCHEMES, "an MQTT")

    @field_validator("password")
    @classmethod
    def _needs_username(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and info.data.get("username") is None:
            raise ValueError("needs username (MQTT sends no password without one)")
        return value

    @field_validator("password_file")
    @classmethod
    def _password_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            if info.data.get("password") is not None:
                raise ValueError("password is set too; give one of them")
            if info.data.get("username") is None:
                raise ValueError("needs username (MQTT sends no password without one)")
        return _secret_file(value, info)

    @field_validator("tls")
    @classmethod
    def _tls_needs_mqtts(cls, value: TlsConfig | None, info: ValidationInfo) -> TlsConfig | None:
        return _tls_scheme(value, info, "mqtts")

    @model_validator(mode="after")
    def _read_password_file(self) -> Self:
        if self.password_file is not None:
            _fill(self, "password", read_secret(Path(self.password_file)))
        return self

    @property
    def uses_tls(self) -> bool:
        """True for ``mqtts://``."""
        return self.url.startswith("mqtts://")


def _check_topic(topic: str) -> str:
    inner = topic
    if topic.startswith("$share/"):
        parts = topic.split("/", 2)
        if len(parts) < 3 or not parts[1]:
            raise ValueError(
                f"{topic!r}: a shared subscription is '$share/GROUP/meters/v1/+/readings'"
            )
        inner = parts[2]
    levels = inner.split("/")
    if len(levels) != 4 or levels[:2] != ["meters", "v1"] or levels[3] != "readings":
        raise ValueError(
            f"{topic!r} is not a readings topic: use 'meters/v1/+/readings', "
            "'meters/v1/GATEWAY/readings' or '$share/GROUP/meters/v1/+/readings'"
        )
    return topic


class IngestConfig(Section):
    """``[ingest]``: concentrator readings over MQTT."""

    broker: MqttBroker
    topics: list[str] = Field(default_factory=lambda: ["meters/v1/+/readings"], min_length=1)
    """Subscriptions (QoS 1), each ``meters/v1/{gw}/readings`` (``+`` for every concentrator),
    or a shared subscription ``$share/GROUP/meters/v1/+/readings`` when several gateways
    split the messages (then seq gaps cannot be seen by one of them and are not reported)."""
    max_payload_bytes: int = Field(default=1024 * 1024, gt=0)
    """Larger messages are rejected and quarantined (truncated) without parsing."""
    window_messages: int = Field(default=4096, ge=1, le=1_000_000)
    """Messages received but not yet committed, at most. Past it (or past ``window_bytes``)
    the MQTT client stops reading, TCP pushes back and the broker queues: set Mosquitto's
    ``max_queued_messages 0`` (or large) so that it does not drop messages for us, and
    ``max_inflight_messages`` to at least this for QoS 1 throughput."""
    window_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Payload bytes of the messages received but not yet committed, at most (a message
    larger than this is still taken, alone). Decoded rows take about three times their
    JSON, so the default holds about 3 MB in flight (the daemon stays under 80 MB with a
    million readings buffered) while a commit cycle of 10-20 ms still takes 50-100 MB/s
    of small messages, about what a gigabit link brings."""
    ts_min: AwareDatetime = datetime(2000, 1, 1, tzinfo=UTC)
    """Readings stamped before this are refused (quarantined with the reason)."""
    ts_max_ahead: Duration = 86400.0
    """Readings stamped more than this ahead of the gateway clock are refused."""
    seq_gap_wait: Duration = Field(default=3600.0, gt=0)
    """How long a concentrator's seq gap waits for its missing messages (a concentrator
    or broker sending them late) after it opened or after the last one came; then it is
    closed ``partly_filled`` (some came) or ``unrecoverable`` (none came)."""

    _topics = field_validator("topics")(lambda topics: [_check_topic(t) for t in topics])

    @property
    def shared(self) -> bool:
        """Whether the subscription is shared with other gateways (seq gaps are not seen)."""
        return any(t.startswith("$share/") for t in self.topics)


class InfluxSinkConfig(Section):
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
        return check_url(url, _HTTP_SCHEMES, "an HTTP")

    @field_validator("token_file")
    @classmethod
    def _token_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("token") is not None:
            raise ValueError("token is set too; give one of them")
        return _secret_file(value, info)

    @field_validator("tls")
    @classmethod
    def _tls_needs_https(cls, value: TlsConfig | None, info: ValidationInfo) -> TlsConfig | None:
        return _tls_scheme(value, info, "https")

    @model_validator(mode="after")
    def _read_token_file(self) -> Self:
        if self.token_file is not None:
            _fill(self, "token", read_secret(Path(self.token_file)))
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


class MqttSinkConfig(Section):
    """``[sinks.mqtt]``: real-time readings to an MQTT topic tree at QoS 1."""

    broker: MqttBroker
    topic_prefix: str = "metergw/v1"
    """Readings go to ``{topic_prefix}/{gateway}/readings``, events to ``.../events``."""
    batch_size: int = Field(default=500, gt=0)
    """Readings per MQTT message."""
    flush_interval: Duration = 0.5
    """Longest a reading waits for a fuller message."""


class LocalSinkConfig(Section):
    """``[sinks.local]``: readings kept queryable on the box (``metergw query``)."""

    enabled: bool = True
    path: ConfigPath | None = None
    """Database file; defaults to ``{gateway.state_dir}/local.sqlite``."""
    retention: Duration = 7 * 86400.0
    """Readings older than this (by their own timestamp) are deleted."""
    batch_size: int = Field(default=5000, gt=0)
    flush_interval: Duration = 0.5


class SinksConfig(Section):
    """``[sinks]``: where readings are forwarded; each has its own cursor."""

    influx: InfluxSinkConfig | None = None
    mqtt: MqttSinkConfig | None = None
    local: LocalSinkConfig | None = None
