"""A simulated MQTT data concentrator.

It reads its virtual meters at a configured rate, packs the readings into
``metergw.readings/1`` batches numbered by ``seq`` (per concentrator, from 0
or from where a seq file says it stopped), and publishes them with QoS 1 to
``meters/v1/{gw}/readings``. ``meters/v1/{gw}/status`` carries a retained
``online`` message and a last will saying offline.

Batches go through a bounded backlog: while the broker is unreachable (not up
yet, restarted, or the ``disconnect`` fault) they wait there and are
published in seq order after reconnecting; when the backlog is full the
oldest batch is dropped and counted (``dropped``), which the receiver sees as
a seq gap. Connecting retries with exponential backoff (0.2 s up to 5 s).

Faults: ``disconnect(duration)`` drops the connection and stays away;
``malformed`` sends an invalid payload after each batch (not consuming seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiomqtt

from protocols.concentrator import encode_status, readings_topic, status_topic
from simulator.concentrator.payload import DEFAULT_POINTS, BatchEncoder, malformed_payloads
from simulator.meter.faults import CONCENTRATOR_FAULTS, FaultSet
from simulator.meter.meter import SimMeter

log = logging.getLogger("simulator.concentrator")


class Concentrator:
    """Publishes the readings of ``meters`` as concentrator ``gw``.

    ``rate`` is readings per second (all meters together); alternatively
    ``interval`` reads every meter once per interval (seconds). ``rate=0``
    publishes as fast as the broker takes it (benchmarks). ``batch`` is the
    number of readings per message; ``backlog`` the number of messages kept
    while offline.
    """

    def __init__(
        self,
        gw: str,
        broker: tuple[str, int],
        meters: Sequence[SimMeter],
        *,
        rate: float | None = None,
        interval: float | None = None,
        batch: int = 100,
        backlog: int = 10_000,
        points: Sequence[str] = DEFAULT_POINTS,
        seq_start: int = 0,
        seq_file: str | Path | None = None,
        window: int = 16,
        keepalive: int = 10,
    ) -> None:
        if not meters:
            raise ValueError(f"concentrator {gw}: no meters")
        if batch < 1 or backlog < 1:
            raise ValueError(f"concentrator {gw}: batch and backlog must be >= 1")
        self.gw = gw
        self.broker = broker
        self.meters = list(meters)
        if rate is None:
            rate = len(self.meters) / (interval if interval else 5.0)
        self.rate = float(rate)
        self.batch_size = min(batch, len(self.meters))
        self.backlog_limit = backlog
        self.window = window
        self.keepalive = keepalive
        self.encoder = BatchEncoder(gw, points)
        self.seq_file = Path(seq_file) if seq_file is not None else None
        if self.seq_file is not None and self.seq_file.exists():
            seq_start = int(self.seq_file.read_text().strip() or 0)
        self.seq = seq_start
        """The seq the next batch gets."""
        self.faults = FaultSet(CONCENTRATOR_FAULTS, f"concentrator {gw}")
        self.backlog: deque[tuple[int, int, bytes]] = deque()
        self.published = 0
        self.published_readings = 0
        self.dropped = 0
        self.dropped_seqs: deque[int] = deque(maxlen=100_000)
        """Seqs dropped from a full backlog. One may still have reached the broker: it
        was in flight when the link broke, unacknowledged, so the concentrator cannot know."""
        self.malformed_sent = 0
        self.connected = asyncio.Event()
        self._space = asyncio.Event()
        self._work = asyncio.Event()
        self._cursor = itertools.cycle(self.meters)
        self._tasks: list[asyncio.Task[None]] = []
        self._malformed = itertools.cycle(malformed_payloads(gw))
        self._pending_malformed: deque[bytes] = deque()
        self.clock = self.meters[0].clock
        self._live: aiomqtt.Client | None = None

    # ----------------------------------------------------------------- faults

    def set_fault(self, fault: str, duration: float | None = None, **params: Any) -> None:
        """``disconnect`` or ``malformed``, until cleared or for ``duration`` s."""
        self.faults.set(fault, duration, **params)
        self._work.set()

    def clear_faults(self, fault: str | None = None) -> None:
        self.faults.clear(fault)
        self._work.set()

    # --------------------------------------------------------------- producing

    def _produce(self) -> None:
        n = self.batch_size
        meters = [next(self._cursor) for _ in range(n)] if n != len(self.meters) else self.meters
        payload = self.encoder.batch(self.seq, self.clock.timestamp(), meters)
        if len(self.backlog) >= self.backlog_limit:
            seq, _, _ = self.backlog.popleft()
            self.dropped += 1
            self.dropped_seqs.append(seq)
            log.warning("backlog_full_dropped_batch gw=%s seq=%d", self.gw, seq)
        self.backlog.append((self.seq, len(meters), payload))
        self.seq += 1
        if self.faults and self.faults.get("malformed") is not None:
            self._pending_malformed.append(next(self._malformed))
        self._work.set()

    async def _producer(self) -> None:
        if self.rate <= 0:  # as fast as the broker takes it
            high_water = max(2 * self.window, 4)
            while True:
                while len(self.backlog) < high_water:
                    self._produce()
                self._space.clear()
                await self._space.wait()
        per_batch = self.batch_size / self.rate
        start = time.monotonic()
        made = 0
        while True:
            due = int((time.monotonic() - start) / per_batch) + 1
            made = max(made, due - 1000)  # far behind schedule: skip, do not flood
            while made < due:
                self._produce()
                made += 1
            await asyncio.sleep(max(0.0, start + made * per_batch - time.monotonic()))

    # --------------------------------------------------------------- publishing

    def _client(self, client_id: str) -> aiomqtt.Client:
        client = aiomqtt.Client(
            self.broker[0],
            self.broker[1],
            identifier=client_id,
            keepalive=self.keepalive,
            timeout=5.0,
            will=aiomqtt.Will(status_topic(self.gw), encode_status(False), qos=1, retain=True),
            max_inflight_messages=max(20, self.window * 2),
        )
        client.pending_calls_threshold = self.window + 1  # the window is by design
        return client

    async def _publisher(self) -> None:
        backoff = 0.2
        client_id = f"metersim-{self.gw}"
        while True:
            if self.faults and self.faults.get("disconnect") is not None:
                await self._wait_fault_over()
                continue
            try:
                async with self._client(client_id) as client:
                    backoff = 0.2
                    await client.publish(
                        status_topic(self.gw), encode_status(True), qos=1, retain=True
                    )
                    self._live = client
                    self.connected.set()
                    log.info("concentrator_connected gw=%s broker=%s", self.gw, self.broker)
                    await self._drain(client)
            except aiomqtt.MqttError as exc:
                if self.connected.is_set():
                    log.warning("concentrator_disconnected gw=%s reason=%s", self.gw, exc)
                self.connected.clear()
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)
            finally:
                self._live = None
                self.connected.clear()

    async def _wait_fault_over(self) -> None:
        while self.faults.get("disconnect") is not None:
            fault = self.faults.get("disconnect")
            remaining = fault.remaining() if fault is not None else 0.0
            self._work.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), timeout=remaining or None)

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish the backlog in seq order, ``window`` messages in flight at a time.

        A batch leaves the backlog only once the broker acknowledged it (and
        every batch before it); on a connection error the unacknowledged ones
        stay and are sent again after reconnecting.
        """
        topic = readings_topic(self.gw)
        inflight: deque[asyncio.Task[None]] = deque()
        try:
            while True:
                if self.faults and self.faults.get("disconnect") is not None:
                    return  # leaving the context closes the connection
                while self._pending_malformed:
                    await client.publish(topic, self._pending_malformed[0], qos=1)
                    self._pending_malformed.popleft()
                    self.malformed_sent += 1
                while len(inflight) < self.window and len(inflight) < len(self.backlog):
                    payload = self.backlog[len(inflight)][2]
                    inflight.append(asyncio.create_task(client.publish(topic, payload, qos=1)))
                if not inflight:
                    self._work.clear()
                    await self._work.wait()
                    continue
                # asyncio.wait, not "await task": cancelling this task must not be
                # passed on to (and possibly swallowed by) the publish call.
                await asyncio.wait((inflight[0],))
                inflight.popleft().result()  # raises MqttError if the connection broke
                _, readings, _ = self.backlog.popleft()
                self.published += 1
                self.published_readings += readings
                self._space.set()
        finally:
            for task in inflight:
                task.cancel()
            if inflight:
                # Bounded: a publish whose acknowledgement never comes must not
                # hold up a reconnect or a shutdown.
                await asyncio.wait(inflight, timeout=1.0)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start producing and publishing (connecting in the background)."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._publisher(), name=f"conc-{self.gw}-publish"),
            asyncio.create_task(self._producer(), name=f"conc-{self.gw}-produce"),
        ]

    async def stop(self) -> None:
        """Stop, saying offline; the next seq is saved to the seq file if configured."""
        if self._live is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._live.publish(
                        status_topic(self.gw), encode_status(False), qos=1, retain=True
                    ),
                    timeout=2.0,
                )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.seq_file is not None:
            self.seq_file.parent.mkdir(parents=True, exist_ok=True)
            self.seq_file.write_text(f"{self.seq}\n")

    async def __aenter__(self) -> Concentrator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
