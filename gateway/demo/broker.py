"""An embedded MQTT broker (amqtt) so that the demo needs nothing installed.

For the demo and for trying metergw on a laptop only: production boxes talk to
Mosquitto or EMQX, which persist sessions and queue QoS 1 messages for
subscribers that are away. amqtt carries QoS 1 between aiomqtt/paho clients
inside one asyncio program, which is all the demo asks of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from gateway.lifecycle import Lifecycle
from gateway.logs import get_logger

log = get_logger("broker")


class BrokerStartError(Exception):
    """The embedded broker could not listen (port taken, bad address)."""


class EmbeddedBroker(Lifecycle):
    """``async with EmbeddedBroker(host, port):`` runs an MQTT 3.1.1 broker.

    Anonymous clients are allowed: bind it to 127.0.0.1 (the default).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._broker: Any = None

    @property
    def url(self) -> str:
        """``mqtt://host:port`` of the listener."""
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen; raise :class:`BrokerStartError` naming the address on failure."""
        try:
            from amqtt.broker import Broker
        except ImportError:
            raise BrokerStartError(
                "the embedded MQTT broker needs amqtt, which is not installed: "
                "pip install 'metergw[demo]', or set [embedded_broker] enabled = false "
                "and point the gateway at Mosquitto"
            ) from None

        # amqtt logs every packet and session at INFO; keep its chatter out of
        # the gateway's event log unless something goes wrong.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)
        config: dict[str, Any] = {
            "listeners": {
                "default": {"type": "tcp", "bind": f"{self.host}:{self.port}"},
            },
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = Broker(config)
        # amqtt logs its own traceback for a failed start; ours names the address.
        amqtt_log = logging.getLogger("amqtt.broker")
        level = amqtt_log.level
        amqtt_log.setLevel(logging.CRITICAL)
        try:
            await self._broker.start()
        except Exception as exc:
            self._broker = None
            cause = exc.__cause__ or exc
            raise BrokerStartError(
                f"embedded MQTT broker cannot listen on {self.host}:{self.port}: {cause}"
            ) from exc
        finally:
            amqtt_log.setLevel(level)
        log.info("embedded_broker_started", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Disconnect every client and stop listening. Safe to call twice."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        # A client that vanished mid-session can make amqtt's shutdown raise;
        # the broker is going away anyway, so a failure here is only logged.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broker.shutdown(), timeout=5.0)
        log.info("embedded_broker_stopped", host=self.host, port=self.port)
