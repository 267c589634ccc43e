"""The server fixtures themselves: they start, answer, stop and come back."""

from __future__ import annotations

import urllib.request

import paho.mqtt.client as mqtt

from tests.servers import MosquittoServer, VictoriaMetricsServer, wait_until


def test_victoria_metrics_takes_influx_line_protocol_and_deduplicates(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    body = b"meter,id=m1 energy=1.5 1700000000000000000\n"
    for _ in range(2):  # a replay of the same point
        req = urllib.request.Request(
            f"{victoria_metrics.url}/api/v2/write?org=o&bucket=b&precision=ns", data=body
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 204
    series = victoria_metrics.export('{__name__="meter_energy"}')
    assert [s["metric"]["id"] for s in series] == ["m1"]
    assert series[0]["values"] == [1.5]
    assert victoria_metrics.samples('{__name__="meter_energy"}') == 1
    victoria_metrics.stop()
    assert not victoria_metrics.ready()
    victoria_metrics.start()
    assert victoria_metrics.samples('{__name__="meter_energy"}') == 1


def test_mosquitto_carries_qos1_and_restarts(mosquitto: MosquittoServer) -> None:
    got: list[bytes] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-sub")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("t/#", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-pub")
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    pub.publish("t/a", b"hello", qos=1).wait_for_publish(5)
    wait_until(lambda: got == [b"hello"], timeout=5, what="the message")
    pub.loop_stop()
    sub.loop_stop()
    pub.disconnect()
    sub.disconnect()
    mosquitto.stop()
    mosquitto.start()
    assert mosquitto.ready()


def test_mosquitto_keeps_a_persistent_session_across_a_restart(mosquitto: MosquittoServer) -> None:
    """A QoS 1 message queued for an offline persistent session is delivered after the broker
    restarts: the fixture's persistence works (the broker can write its database)."""
    subscribed: list[int] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-keep", clean_session=False)
    sub.on_subscribe = lambda c, u, mid, codes, p: subscribed.append(mid)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    sub.subscribe("t/#", qos=1)
    wait_until(lambda: subscribed, timeout=5, what="the SUBACK")
    sub.loop_stop()
    sub.disconnect()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-pub2")
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    pub.publish("t/kept", b"queued", qos=1).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()
    mosquitto.stop()  # SIGTERM: Mosquitto saves its database on the way out
    assert "Error saving" not in mosquitto.log.read_text()
    mosquitto.start()
    got: list[bytes] = []
    again = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-keep", clean_session=False)
    again.on_message = lambda c, u, m: got.append(m.payload)
    again.connect(mosquitto.host, mosquitto.port)
    again.loop_start()
    try:
        wait_until(lambda: got == [b"queued"], timeout=5, what="the queued message")
    finally:
        again.loop_stop()
        again.disconnect()
