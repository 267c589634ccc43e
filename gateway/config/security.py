"""TLS settings and credentials of the northbound connections (MQTT brokers, InfluxDB).

Secrets never reach a log line, a message or a repr: passwords and tokens are
:class:`~pydantic.SecretStr`, and credentials written into a URL
(``mqtt://user:pass@host``) are taken out of it during validation, so the URL
the rest of the gateway sees (and prints) carries none. Files named in the
config (CA, certificate, key, password and token files) are read while the
config is validated, so ``check-config`` names an unreadable or malformed one
by its key before anything connects.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Self
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr, ValidationInfo, field_validator, model_validator

from gateway.config.base import Section

CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"
"""Where systemd puts the files of ``LoadCredential=`` (only the service can read them)."""


def _netloc_span(url: str) -> tuple[int, int]:
    """Start and end of the authority part of ``url`` (empty span when there is none)."""
    start = url.find("://")
    if start < 0:
        return 0, 0
    start += 3
    end = len(url)
    for sep in "/?#":
        i = url.find(sep, start)
        if 0 <= i < end:
            end = i
    return start, end


def redact_url(url: str) -> str:
    """``url`` without user name and password, for messages (never raises)."""
    start, end = _netloc_span(url)
    netloc = url[start:end]
    if "@" not in netloc:
        return url
    return url[:start] + netloc.rpartition("@")[2] + url[end:]


def split_url_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``mqtt://user:pass@host:1883`` -> (``mqtt://host:1883``, ``user``, ``pass``).

    User name and password are percent-decoded (``p%40ss`` is ``p@ss``).
    """
    start, end = _netloc_span(url)
    netloc = url[start:end]
    if "@" not in netloc:
        return url, None, None
    userinfo, _, hostport = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return (
        url[:start] + hostport + url[end:],
        unquote(user) or None,
        unquote(password) if colon else None,
    )


def _context_base(info: ValidationInfo) -> Path:
    context = info.context if isinstance(info.context, Mapping) else {}
    base = context.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def resolve_config_file(value: str, info: ValidationInfo) -> Path:
    """A path from the config: absolute, or relative to the config file's directory."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else _context_base(info) / path


def _check_readable(path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None


def resolve_credential_file(value: str, info: ValidationInfo) -> Path:
    """A secret's file: a bare name is a systemd credential, anything else a path.

    A bare name (no ``/``) is looked up in ``$CREDENTIALS_DIRECTORY`` when the
    service manager set it (``LoadCredential=NAME:/etc/metergw/NAME``);
    otherwise it is a path relative to the config file, like any other.
    """
    creds = os.environ.get(CREDENTIALS_DIRECTORY)
    if "/" not in value and creds:
        return Path(creds) / value
    return resolve_config_file(value, info)


def read_secret(path: Path, hint: str = "") -> SecretStr:
    """The secret held in a file of one line (a final newline is not part of it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}{hint}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise ValueError(f"{path} is empty")
    if "\n" in secret:
        raise ValueError(f"{path} has more than one line (a secret file holds one line)")
    return SecretStr(secret)


def credential_hint(value: str) -> str:
    """Why a bare name was not found, for the error message."""
    if "/" in value or os.environ.get(CREDENTIALS_DIRECTORY):
        return ""
    return f" (a bare name is looked up in ${CREDENTIALS_DIRECTORY}, which is not set)"


class TlsConfig(Section):
    """TLS options of a connection (``tls = { ca_file = "...", ... }``).

    TLS is on for ``mqtts://`` and ``https://`` URLs; this table only refines
    it. Without ``ca_file`` the server is verified against the system's trust
    store. Paths are relative to the config file; each file is read when the
    config is checked, so a missing or unreadable one is named before start.
    """

    ca_file: str | None = None
    """PEM file of the CA certificate(s) that signed the server's certificate."""
    cert_file: str | None = None
    """PEM client certificate, for brokers and servers that require one (may hold the key too)."""
    key_file: str | None = None
    """PEM private key of ``cert_file`` (unencrypted)."""
    insecure: bool = False
    """Skip verifying the server's certificate and name (a warning is logged at start).
    For a first test only: it makes the connection open to a man in the middle."""

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _readable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        path = resolve_config_file(value, info)
        _check_readable(path)
        return str(path)

    @model_validator(mode="after")
    def _loadable(self) -> Self:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file: needs cert_file (the certificate of this key)")
        self.ssl_context()  # the same checks a connection makes, with messages that name the key
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: verifying (unless ``insecure``), with our certificate if given.

        Raises ValueError naming the key whose file cannot be used.
        """
        ctx = ssl.create_default_context()
        if self.ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=self.ca_file)
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(
                    f"ca_file: {self.ca_file} holds no usable PEM certificate ({exc})"
                ) from None
        if self.cert_file is not None:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file)
            except (ssl.SSLError, OSError) as exc:
                files = self.cert_file + (f" and {self.key_file}" if self.key_file else "")
                raise ValueError(
                    f"cert_file: cannot use {files} as certificate and key ({exc})"
                ) from None
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def client_ssl_context(tls: TlsConfig | None) -> ssl.SSLContext:
    """The context of a TLS connection: the table's, or the system trust store's."""
    return tls.ssl_context() if tls is not None else ssl.create_default_context()


def check_url(url: str, schemes: tuple[str, ...], what: str) -> str:
    """Check a URL's scheme (one of ``schemes``), port and host; messages never show a password."""
    shown = redact_url(url)
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in schemes:
        allowed = " or ".join(f"{s}://host:port" for s in schemes)
        raise ValueError(f"{shown!r} is not {what} URL ({allowed})")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"{shown!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{shown!r} names no host")
    return url
