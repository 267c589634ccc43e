"""Northbound sections: the buffer, concentrator ingest and the sinks.

Each sink's own section model lives beside the sink (``gateway/forward/NAME.py``);
``[sinks]`` is validated through the sink registry (:class:`SinksConfig`).
"""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ModelWrapValidatorHandler,
    RootModel,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import (
    CoreSchema,
    ErrorDetails,
    InitErrorDetails,
    PydanticCustomError,
)

from gateway.config.base import ConfigPath, Duration, Section, did_you_mean
from gateway.config.security import (
    TlsConfig,
    check_url,
    credential_hint,
    read_secret,
    resolve_credential_file,
    split_url_credentials,
)

_MQTT_SCHEMES = ("mqtt", "mqtts")


def resolve_secret_file(value: str | None, info: ValidationInfo) -> str | None:
    """Resolve a ``*_file`` secret and check it can be read (the error names the key)."""
    if value is None:
        return None
    path = resolve_credential_file(value, info)
    read_secret(path, credential_hint(value))
    return str(path)


def check_tls_scheme(
    value: TlsConfig | None, info: ValidationInfo, scheme: str
) -> TlsConfig | None:
    """A ``tls`` table is only meaningful with a ``{scheme}://`` url (a field validator's body)."""
    url = info.data.get("url")
    if value is not None and isinstance(url, str) and not url.startswith(f"{scheme}://"):
        plain = url.partition("://")[0]
        raise ValueError(f"is set but the url is {plain}:// (use {scheme}:// for TLS)")
    return value


def fill_secret(model: Section, name: str, value: SecretStr) -> None:
    """Set a secret read from its ``*_file`` on a frozen model (in an after-validator)."""
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
        return resolve_secret_file(value, info)

    @field_validator("tls")
    @classmethod
    def _tls_needs_mqtts(cls, value: TlsConfig | None, info: ValidationInfo) -> TlsConfig | None:
        return check_tls_scheme(value, info, "mqtts")

    @model_validator(mode="after")
    def _read_password_file(self) -> Self:
        if self.password_file is not None:
            fill_secret(self, "password", read_secret(Path(self.password_file)))
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


class SinkSection(Section):
    """What every ``[sinks.NAME]`` section has; each sink's model adds its own keys."""

    enabled: bool = True
    """``false`` keeps the section but runs no sink (its cursor waits in the buffer)."""


S = TypeVar("S", bound=SinkSection)


def _summary(model: type[BaseModel]) -> str:
    """The first paragraph of a section model's docstring, as one line, without the
    ``[section]``: it starts with."""
    first = inspect.cleandoc(model.__doc__ or "").split("\n\n")[0]
    first = " ".join(re.sub(r"^``\[[^\]]*\]+``: ", "", first).split())
    return first[:1].upper() + first[1:]


def _in_section(name: str, error: ErrorDetails) -> InitErrorDetails:
    """One error of ``[sinks.NAME]``'s own validation, located under ``NAME``."""
    message = error["msg"]
    return {
        # Re-raised under its own type, so messages and "did you mean" read as before.
        "type": PydanticCustomError(error["type"], message),
        "loc": (name, *error["loc"]),
        "input": error["input"],
    }


class SinksConfig(RootModel[dict[str, SerializeAsAny[SinkSection]]]):
    """``[sinks]``: where readings are forwarded, one ``[sinks.NAME]`` table per sink.

    Each sink has its own cursor in the buffer. Which names exist, and what each
    table holds, is the sink registry's: an unknown name is an error naming it.
    """

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    root: dict[str, SerializeAsAny[SinkSection]] = Field(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _by_registry(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo
    ) -> Self:
        if not isinstance(data, dict):
            return handler(data)  # a SinksConfig as it is, or pydantic's own type error
        models = cls.sections()
        errors: list[InitErrorDetails] = []
        sections: dict[str, SinkSection] = {}
        for name, raw in data.items():
            model = models.get(name)
            if model is None:
                hint = did_you_mean(str(name), models)
                message = f"unknown sink {name!r}" + (f"; {hint}" if hint else "")
                message += f" (sinks: {', '.join(models)})"
                error = PydanticCustomError("unknown_sink", message)
                errors.append({"type": error, "loc": (name,), "input": raw})
                continue
            try:
                sections[name] = model.model_validate(raw, context=info.context)
            except ValidationError as exc:
                errors += [_in_section(name, e) for e in exc.errors(include_url=False)]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors, hide_input=True)
        return handler({name: sections[name] for name in models if name in sections})

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """One optional table per registered sink (its model, under ``$defs``); no other."""
        return handler(cls.as_fields().__pydantic_core_schema__)

    @classmethod
    def as_fields(cls) -> type[Section]:
        """``[sinks]`` as a plain model, one optional field per registered sink: the shape
        the JSON Schema and the reference page are made from (validation is the registry's,
        in :meth:`_by_registry`, so that a sink registered later is seen)."""
        fields: dict[str, Any] = {
            name: (model | None, Field(default=None, description=_summary(model)))
            for name, model in cls.sections().items()
        }
        return create_model(cls.__name__, __base__=Section, __doc__=cls.__doc__, **fields)

    @classmethod
    def sections(cls) -> dict[str, type[SinkSection]]:
        """``[sinks.NAME]`` -> the model its table is validated with, in registry order."""
        # The registry is gateway/forward/registry.py and each sink's module holds its
        # config model, so that a new sink is one file and one registry line. It is looked
        # up when a file is validated rather than imported with this module: the sink
        # modules import this layer's shared pieces (Section, MqttBroker, TlsConfig), so a
        # module-level import would be circular; and a sink registered at run time is seen.
        from gateway.forward.registry import SINKS

        return {name: entry.config for name, entry in SINKS.items()}

    def names(self) -> list[str]:
        """The configured sinks, enabled or not, in registry order."""
        return list(self.root)

    def enabled(self) -> list[str]:
        """The configured sinks that run (``enabled`` is not false)."""
        return [name for name, section in self.root.items() if section.enabled]

    def get(self, name: str) -> SinkSection | None:
        """``[sinks.NAME]``, or None when the file has no such table."""
        return self.root.get(name)

    def section(self, name: str, model: type[S]) -> S | None:
        """``[sinks.NAME]`` as its own model (typed), or None when the file has none."""
        section = self.root.get(name)
        return section if isinstance(section, model) else None

    def __getitem__(self, name: str) -> SinkSection:
        return self.root[name]

    def __contains__(self, name: object) -> bool:
        return name in self.root
