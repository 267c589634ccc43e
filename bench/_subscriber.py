"""A plain paho QoS 1 subscriber: the broker's own ceiling, with no gateway behind it.

Run as ``python bench/_subscriber.py PORT TOPIC COUNT``: subscribes at QoS 1
(paho acknowledges each message as it arrives), prints ``ready`` once the
broker granted the subscription, then one JSON line when ``COUNT`` messages
arrived (or after 300 s): how many, and the monotonic time of the last one.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> None:
    port, topic, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    subscribed, done = threading.Event(), threading.Event()
    received = 0
    last = 0.0

    def on_message(*_: Any) -> None:
        nonlocal received, last
        received += 1
        if received >= count:
            last = time.monotonic()
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-ceiling-sub", clean_session=True)
    c.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
    c.on_subscribe = lambda *_: subscribed.set()
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not subscribed.wait(15):
        raise SystemExit("no SUBACK")
    print("ready", flush=True)
    done.wait(300)
    c.disconnect()
    c.loop_stop()
    print(json.dumps({"received": received, "last": last or time.monotonic()}), flush=True)


if __name__ == "__main__":
    main()
