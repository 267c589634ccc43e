"""Concentrator ingest: MQTT QoS 1 in, acknowledged only after the buffer commit.

paho-mqtt 2.x is used directly because aiomqtt does not expose manual
acknowledgement. Its network loop runs in paho's own thread (``loop_start``):
that thread reads the socket, keeps the session alive and reconnects with
backoff, independent of how busy the event loop is. Messages are handed to
the event loop in batches (:mod:`gateway.ingest.handoff`); decoding, the buffer
submit and the acknowledgement happen there. ``Client.ack`` only queues a PUBACK
packet under paho's own lock and wakes its loop through paho's socket pair
(the same path a publish from another thread takes), so calling it from the
event loop thread is safe.

A PUBACK is sent only after the buffer has committed the message's readings
(or its quarantine entry, for an invalid payload): an unacknowledged message
is sent again by the broker after a reconnect (persistent session,
``clean_session=False``, stable client id), and the repeat is recognised by
its content (the payload's digest, stored with the readings) and dropped, with
a ``message_repeated`` event. An ack is never sent on a later connection than
the one the message came on: packet ids belong to a connection.

Every message ends acknowledged and accounted for: stored, refused (quarantined
with the reason, an event and a counter), or dropped as a repeat (an event and a
counter). Messages received and not yet committed are bounded by count and by
payload bytes (``window_messages``, ``window_bytes``).
"""

from __future__ import annotations

import asyncio
import bisect
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.buffer import JobStore, Outcome, QuarantineEntry, WriteJob
from gateway.config.northbound import IngestConfig
from gateway.config.security import client_ssl_context
from gateway.gaps.network import SeqGaps
from gateway.ingest.decode import TimeWindow, decode_message, message_job, reason_kind
from gateway.ingest.handoff import Handoff
from gateway.ingest.login import BrokerLogin
from gateway.ingest.sequence import FollowUp, SeqPlan, SequenceTracker
from gateway.ingest.window import Window
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.model import Event, EventKind
from protocols.concentrator import PayloadError, gw_from_topic

log = get_logger("ingest")

RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0


@dataclass(order=True, slots=True)
class _Message:
    index: int
    topic: str = field(compare=False)
    payload: bytes = field(compare=False)
    mid: int = field(compare=False)
    qos: int = field(compare=False)
    generation: int = field(compare=False)
    received_ms: int = field(compare=False)
    size: int = field(compare=False)
    """Payload bytes: its share of the window."""
    job: WriteJob | None = field(default=None, compare=False)
    """Decoded once; a retry resubmits the same job."""
    plan: SeqPlan | None = field(default=None, compare=False)
    """What its ``seq`` was taken to mean (planned once, with the job)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ConcentratorIngest:
    """Subscribes to concentrators and stores what they send; see the module docstring.

    ``acceptor`` is the :class:`~gateway.buffer.Buffer` (it needs ordered
    ``submit`` so that a message's ``seq`` is stored in the same transaction
    as its readings).
    """

    def __init__(
        self,
        config: IngestConfig,
        acceptor: JobStore,
        metrics: Metrics,
        *,
        gateway_name: str,
        marks: Mapping[str, tuple[int, int]] = {},
        seq_gaps: SeqGaps | None = None,
    ) -> None:
        """``marks``: each concentrator's newest stored (seq, ts) (``Buffer.marks()``);
        ``seq_gaps``: the ledger's concentrator gaps (the daemon's, kept across reloads);
        without it a seq jump is only a ``network_gap`` event."""
        self._config = config
        self._store = acceptor
        self._metrics = metrics
        url = urlsplit(config.broker.url)  # validation took any credentials out of it
        self._host = url.hostname or "localhost"
        self._tls = config.broker.uses_tls
        self._port = url.port or (8883 if self._tls else 1883)
        self.client_id = config.broker.client_id or f"metergw-{gateway_name}-ingest"
        self._login = BrokerLogin(config.broker, self.client_id, acceptor)
        self._generation = 0
        self._index = 0
        self._held: list[_Message] = []
        self._failing = False
        self._has_held = asyncio.Event()
        self._connected = False
        self._window = Window(config.window_messages, config.window_bytes)
        self._stopping = False
        self.sequence = SequenceTracker(marks, shared=config.shared, gaps=seq_gaps)
        self.received = 0
        self.duplicates = 0
        self.rejected = 0
        self.refused_readings = 0
        """Readings refused one by one (outside the time window), in stored messages."""
        self.refused_messages = 0

    @property
    def connected(self) -> bool:
        """True while the MQTT session is up."""
        return self._connected

    @property
    def refused(self) -> str | None:
        """Why the broker does not let us in (login refused, TLS failed), for ``/readyz``."""
        return self._login.refused

    def _client(self, loop: asyncio.AbstractEventLoop) -> mqtt.Client:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            manual_ack=True,
            protocol=mqtt.MQTTv311,
        )
        b = self._config.broker
        if b.username:
            c.username_pw_set(b.username, b.password.get_secret_value() if b.password else None)
        if self._tls:
            c.tls_set_context(client_ssl_context(b.tls))
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        topics = [(t, 1) for t in self._config.topics]
        answered = [False]  # a CONNACK came on this connection attempt (paho's thread only)

        def on_pre_connect(_c: mqtt.Client, _u: Any) -> None:
            answered[0] = False

        def on_connect(client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            answered[0] = True
            if rc.is_failure:
                loop.call_soon_threadsafe(self._set_connected, False, str(rc))
                loop.call_soon_threadsafe(self._login.connack_refused, int(rc.value), str(rc))
                return
            self._generation += 1  # before any message of this connection arrives
            client.subscribe(topics)
            loop.call_soon_threadsafe(self._login.connected)
            loop.call_soon_threadsafe(self._set_connected, True, "")

        def on_connect_fail(_c: mqtt.Client, _u: Any) -> None:
            # paho calls this inside its ``except OSError`` around the connect and passes
            # no exception: the one being handled says what went wrong (TLS, refused...).
            loop.call_soon_threadsafe(self._login.connect_failed, sys.exc_info()[1])

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            loop.call_soon_threadsafe(self._set_connected, False, str(rc))
            if not answered[0]:
                loop.call_soon_threadsafe(self._login.closed_before_connack)

        def window_gauges() -> None:
            self._metrics.ingest_window_messages.set(self._window.messages)
            self._metrics.ingest_window_bytes.set(self._window.bytes)

        arrivals: Handoff[tuple[str, bytes, int, int, int]] = Handoff(
            loop, lambda a: self._on_message(*a), window_gauges
        )

        def on_message(_c: mqtt.Client, _u: Any, m: mqtt.MQTTMessage) -> None:
            payload = m.payload if isinstance(m.payload, bytes) else bytes(m.payload)
            if not self._window.take(len(payload), lambda: self._stopping):
                return  # stopping: unacknowledged, the broker sends it again
            arrivals.put((m.topic, payload, m.mid, m.qos, self._generation))

        c.on_pre_connect = on_pre_connect
        c.on_connect = on_connect
        c.on_connect_fail = on_connect_fail
        c.on_disconnect = on_disconnect
        c.on_message = on_message
        return c

    async def run(self) -> None:
        """Subscribe and ingest until cancelled (reconnecting with backoff)."""
        loop = asyncio.get_running_loop()
        self._mqtt = self._client(loop)
        self._mqtt.connect_async(self._host, self._port, self._config.broker.keepalive)
        self._mqtt.loop_start()
        b = self._config.broker
        log.info(  # the URL holds no password: validation moved it to ``password``
            "ingest_started", broker=b.url, client_id=self.client_id, username=b.username
        )
        if self._tls and b.tls is not None and b.tls.insecure:
            log.warning("tls_verification_disabled", broker=b.url, part="ingest")
        if self.sequence.shared:
            log.info(
                "ingest_shared_subscription", topics=self._config.topics, seq_gaps="not reported"
            )
        try:
            # The retry loop is this task's own: if it fails, ingest fails (and the daemon
            # with it, with the reason) instead of holding messages for ever.
            await self._retry_forever()
        finally:
            self._stopping = True
            for msg in self._held:  # never stored by this run: the broker sends them again
                self._abandon(msg)
            self._mqtt.disconnect()
            await asyncio.to_thread(self._mqtt.loop_stop)
            self._set_connected(False, "stopped")

    def _set_connected(self, up: bool, reason: str) -> None:
        if up != self._connected:
            if up:
                log.info("ingest_connected", broker=self._config.broker.url)
            else:
                log.warning("ingest_disconnected", broker=self._config.broker.url, reason=reason)
        self._connected = up
        gauge = getattr(self._metrics, "ingest_connected", None)
        if gauge is not None:
            gauge.set(1 if up else 0)

    # -- per message, on the event loop ------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int, gen: int) -> None:
        if self._stopping:
            return  # handed over as ingest stopped: unacknowledged, the broker sends it again
        self._index += 1
        self.received += 1
        msg = _Message(self._index, topic, payload, mid, qos, gen, _now_ms(), len(payload))
        if self._failing or not self._store.healthy:
            self._failing = True
            self._hold(msg)
        else:
            self._submit(msg)

    def _job(self, msg: _Message) -> WriteJob:
        if msg.job is None:
            msg.job = self._decode(msg)
            msg.payload = b""  # a retry needs only the job: do not hold the raw bytes too
        return msg.job

    def _decode(self, msg: _Message) -> WriteJob:
        cfg = self._config
        window = TimeWindow(
            int(cfg.ts_min.timestamp() * 1000), msg.received_ms + int(cfg.ts_max_ahead * 1000)
        )
        try:
            d = decode_message(
                msg.topic, msg.payload, msg.received_ms, cfg.max_payload_bytes, window
            )
        except PayloadError as exc:
            return self._reject(msg, exc.reason)
        job = message_job(msg.topic, msg.payload, msg.received_ms, d)
        assert job.mark is not None
        # In arrival order (the order of commits): a gap's row commits with the message
        # that revealed it, a late message's count with the message.
        msg.plan, job.mark = self.sequence.plan(job.mark, msg.received_ms)
        if msg.plan.events:
            job.events = (*job.events, *msg.plan.events)
        if msg.plan.records:
            job.gaps = [r.row() for r in msg.plan.records]
        return job

    def _reject(self, msg: _Message, reason: str) -> WriteJob:
        self.rejected += 1
        kind = reason_kind(reason)
        self._metrics.payloads_rejected.labels(reason=kind).inc()
        log.warning("payload_rejected", topic=msg.topic, bytes=len(msg.payload), reason=reason)
        subject = gw_from_topic(msg.topic) or msg.topic
        event = Event(
            EventKind.PAYLOAD_REJECTED, msg.received_ms, subject, reason, {"topic": msg.topic}
        )
        entry = QuarantineEntry("ingest", msg.topic, reason, msg.payload, kind=kind)
        return WriteJob(events=(event,), quarantine=(entry,), origin="ingest", subject=msg.topic)

    def _submit(self, msg: _Message) -> None:
        fut = self._store.submit(self._job(msg))
        fut.add_done_callback(self._after(msg))

    def _after(self, msg: _Message) -> Callable[[asyncio.Future[WriteJob]], None]:
        def done(fut: asyncio.Future[WriteJob]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                if self._stopping:
                    self._abandon(msg)
                    return
                # Not stored: hold it (and everything after it) and retry in order.
                self._failing = True
                self._hold(msg)
                return
            self._settled(msg, fut.result())

        return done

    def _settled(self, msg: _Message, job: WriteJob) -> None:
        """The message's job committed (stored, refused or a repeat): account, then ack."""
        if job.outcome is Outcome.DUPLICATE:
            self.duplicates += 1
            log.info("message_repeated", topic=msg.topic, seq=job.mark.seq if job.mark else None)
        elif job.outcome is Outcome.REJECTED:
            self.rejected += 1
            self._metrics.payloads_rejected.labels(reason="unstorable").inc()
        elif job.mark is not None and job.quarantine:  # valid, but readings were refused
            self.refused_messages += 1
            self.refused_readings += sum(int(e.detail.get("readings") or 0) for e in job.events)
            log.warning("readings_refused", topic=msg.topic, reason=job.quarantine[0].reason)
        if msg.plan is not None:
            plan, msg.plan = msg.plan, None
            stored = job.outcome is Outcome.ACCEPTED
            if stored:
                for e in plan.events:
                    log.warning(str(e.kind), concentrator=e.subject, reason=e.reason)
            if follow := self.sequence.settled(plan, stored, _now_ms()):
                self._note(follow)
        self._ack(msg)

    def _abandon(self, msg: _Message) -> None:
        """A message this run will not store: what its seq was taken to mean is undone."""
        if msg.plan is not None:
            plan, msg.plan = msg.plan, None
            if follow := self.sequence.settled(plan, False, _now_ms()):
                self._note(follow)

    def _note(self, follow: FollowUp) -> None:
        """Store what a commit showed (a step back decided, a gap filed or counted late):
        rare, so a job of its own."""
        for e in follow.events:
            log.warning(str(e.kind), concentrator=e.subject, reason=e.reason)
        job = WriteJob(
            events=follow.events,
            gaps=[r.row() for r in follow.records],
            mark=follow.mark,
            origin="ingest",
        )
        gaps = self.sequence.gaps

        def done(f: asyncio.Future[WriteJob]) -> None:
            if f.cancelled():
                log.error("ingest_events_not_stored", error="cancelled")
            elif f.exception() is not None:
                log.error("ingest_events_not_stored", error=str(f.exception()))
            elif gaps is not None:
                gaps.committed(follow.records)

        self._store.submit(job).add_done_callback(done)

    def _ack(self, msg: _Message) -> None:
        if msg.qos > 0 and msg.generation == self._generation:
            self._mqtt.ack(msg.mid, msg.qos)
        self._window.give_back(msg.size)

    def _hold(self, msg: _Message) -> None:
        bisect.insort(self._held, msg)
        self._has_held.set()

    async def _retry_forever(self) -> None:
        while True:
            await self._has_held.wait()
            await self._retry()
            self._has_held.clear()

    async def _retry(self) -> None:
        """Resubmit held messages in arrival order until the buffer takes them."""
        delay = RETRY_MIN_S
        while self._held:
            log.warning("ingest_waiting_for_buffer", held=len(self._held), retry_in_s=delay)
            await asyncio.sleep(delay)
            batch, self._held = self._held, []
            futures = [(m, self._store.submit(self._job(m))) for m in batch]
            failed = False
            for m, fut in futures:
                try:
                    job = await fut
                except Exception:
                    failed = True
                    bisect.insort(self._held, m)
                    continue
                self._settled(m, job)
            delay = min(delay * 2, RETRY_MAX_S) if failed else RETRY_MIN_S
        self._failing = False
        log.info("ingest_buffer_recovered")
