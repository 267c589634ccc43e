"""Shared pieces of the store-and-forward tests: a QoS 1 publisher and configs."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

_ids = itertools.count()


class Publisher:
    """A concentrator stand-in: publishes at QoS 1 and waits for the broker's PUBACK."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-pub-{next(_ids)}", clean_session=True
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> None:
        """Publish and return once the broker acknowledged (raise if it did not)."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"no PUBACK for a message on {topic}")

    def publish_many(self, messages: list[tuple[str, bytes]], timeout: float = 30.0) -> None:
        infos = [self.client.publish(t, p, qos=1) for t, p in messages]
        for info in infos:
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise TimeoutError("no PUBACK")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def prepare_session(host: str, port: int, client_id: str, topic: str) -> None:
    """Create the gateway's persistent session at the broker, as its first start would.

    A broker queues QoS 1 messages only for sessions that exist; creating it
    first makes "every acknowledged message arrives" hold from message one.
    """
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_subscribe = lambda *_: done.set()
    c.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
    c.connect(host, port)
    c.loop_start()
    try:
        if not done.wait(10):
            raise TimeoutError("no SUBACK")
    finally:
        c.disconnect()
        c.loop_stop()


def write_config(
    path: Path,
    *,
    state_dir: Path,
    mqtt_url: str | None = None,
    influx_url: str | None = None,
    local: bool = False,
    client_id: str = "metergw-test-ingest",
    commit_interval: str = "20ms",
    batch_size: int = 5000,
    flush_interval: str = "50ms",
) -> Path:
    """A pipeline config file (ingest and/or influx sink) for tests and the bench."""
    text = f'[gateway]\nname = "gw-test"\nstate_dir = "{state_dir}"\n\n'
    text += '[logging]\nlevel = "warning"\nformat = "json"\n\n'
    text += f'[buffer]\ncommit_interval = "{commit_interval}"\ncommit_max_rows = 20000\n\n'
    if mqtt_url:
        text += f'[ingest]\nbroker = {{ url = "{mqtt_url}", client_id = "{client_id}" }}\n\n'
    if influx_url:
        text += (
            f'[sinks.influx]\nurl = "{influx_url}"\ntoken = "t"\norg = "o"\nbucket = "b"\n'
            f'batch_size = {batch_size}\nflush_interval = "{flush_interval}"\ntimeout = "5s"\n\n'
        )
    if local:
        text += f'[sinks.local]\nflush_interval = "{flush_interval}"\n\n'
    path.write_text(text)
    return path
