"""Why an MQTT client is not connected: refused logins and failed TLS, said once per streak.

A broker that refuses our credentials, or presents a certificate we do not
trust, refuses them again on every reconnect attempt: that needs an operator,
so it is an error in the log, an ``ingest_login_refused`` event (for a refused
login) and a reason for ``/readyz`` to fail, until a connection succeeds. A
broker that is merely down is a warning and no readiness problem (the broker
queues for our persistent session). Each streak of the same failure is logged
once, not once per attempt.
"""

from __future__ import annotations

import asyncio
import ssl
import time

from gateway.buffer import JobStore, WriteJob
from gateway.config.northbound import MqttBroker
from gateway.logs import get_logger
from gateway.model import Event, EventKind

log = get_logger("ingest")

BROKER_BUSY = frozenset({136, 137, 159})
"""CONNACK refusals that pass by themselves (server unavailable, server busy, connection
rate exceeded); every other refusal (bad user name or password, not authorised, banned,
client id not valid) needs an operator."""


def describe_connect_error(exc: BaseException | None) -> str:
    """A failed connect in a few words (the TLS reason, or the socket error)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the server's certificate is not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if exc is None:
        return "unknown error"
    return str(getattr(exc, "strerror", None) or exc or type(exc).__name__)


class BrokerLogin:
    """The login state of one MQTT client; every method runs on the event loop."""

    def __init__(self, broker: MqttBroker, client_id: str, store: JobStore) -> None:
        self._broker = broker
        self._client_id = client_id
        self._store = store
        self.refused: str | None = None
        """Why the broker does not let us in; None once a connection succeeded."""
        self._streak: str | None = None
        """The failure repeated since the last success (logged once)."""

    def connected(self) -> None:
        """A connection succeeded: the streak and the readiness reason end."""
        if self.refused is not None:
            log.info("ingest_login_accepted", broker=self._broker.url)
        self.refused = None
        self._streak = None

    def connack_refused(self, code: int, reason: str) -> None:
        """The broker answered CONNECT with a refusal (CONNACK reason ``code``)."""
        if code in BROKER_BUSY:
            self.connect_failed(ConnectionRefusedError(reason))
            return
        b = self._broker
        self.refused = f"broker {b.url} refused the login (user {b.username!r}): {reason}"
        if self._streak == reason:
            log.debug("ingest_login_refused", broker=b.url, reason=reason)
            return
        self._streak = reason
        log.error("ingest_login_refused", broker=b.url, username=b.username, reason=reason)
        event = Event(
            EventKind.INGEST_LOGIN_REFUSED,
            time.time_ns() // 1_000_000,
            b.url,
            reason,
            {"broker": b.url, "username": b.username, "client_id": self._client_id},
        )
        self._store.submit(WriteJob(events=(event,))).add_done_callback(_log_unstored)

    def connect_failed(self, exc: BaseException | None) -> None:
        """No MQTT session: the TCP connection or the TLS handshake failed."""
        # A certificate problem does not pass by retrying; an unreachable broker may.
        self._failed(describe_connect_error(exc), persistent=isinstance(exc, ssl.SSLError))

    def closed_before_connack(self) -> None:
        """The broker closed the connection before it answered our CONNECT.

        With TLS 1.3 this is how a broker that requires a client certificate
        refuses a client that has none: the handshake looked complete to us.
        """
        b = self._broker
        reason = "the broker closed the connection before answering the login"
        if b.uses_tls and (b.tls is None or b.tls.cert_file is None):
            reason += "; brokers that require a client certificate do this: set tls.cert_file"
        self._failed(reason, persistent=b.uses_tls)

    def _failed(self, reason: str, *, persistent: bool) -> None:
        b = self._broker
        if persistent:
            self.refused = f"broker {b.url}: {reason}"
        if self._streak == reason:
            log.debug("ingest_connect_failed", broker=b.url, reason=reason)
            return
        self._streak = reason
        level = log.error if persistent else log.warning
        level("ingest_connect_failed", broker=b.url, reason=reason)


def _log_unstored(fut: asyncio.Future[WriteJob]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("ingest_event_not_stored", error=str(fut.exception()))
