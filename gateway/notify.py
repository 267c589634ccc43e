"""Tell systemd how the daemon is doing: the ``sd_notify`` datagram protocol.

Under a ``Type=notify`` unit, systemd passes the path of a datagram socket in
``NOTIFY_SOCKET`` (a leading ``@`` means Linux's abstract namespace) and, with
``WatchdogSec=``, the watchdog period in ``WATCHDOG_USEC`` (for the process
in ``WATCHDOG_PID``, when set). Each message is one datagram of
``KEY=VALUE`` lines: ``READY=1`` once the daemon serves, ``STATUS=...`` for
``systemctl status``, ``WATCHDOG=1`` at least once per period (else systemd
kills and restarts the service), ``RELOADING=1`` when a reload starts (then
``READY=1`` when it is done) and ``STOPPING=1`` when shutting down.

Written here rather than taken from PyPI: the protocol is one ``sendto`` and
is documented as stable (``man sd_notify``); ``sdnotify`` has had no release
since 2017 and knows no watchdog period, and ``systemd-python`` needs a C
build against libsystemd. Outside systemd (no ``NOTIFY_SOCKET``) every call
is a no-op, so the daemon calls it unconditionally.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping

from gateway.logs import get_logger

log = get_logger("notify")


class Notifier:
    """Sends state changes and watchdog pings to the service manager, if there is one.

    ``address`` is the ``NOTIFY_SOCKET`` value (``None``: not under systemd);
    ``watchdog_usec`` the watchdog period systemd enforces (``None``: none).
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd set up for this process (a no-op one if none)."""
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        raw = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process the watchdog is meant for; a child that
        # inherited the environment is not it.
        if raw.isdigit() and (not pid or pid == str(os.getpid())):
            usec = int(raw)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        """Whether there is a service manager listening."""
        return self.address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half the period, as systemd advises), or ``None``."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def notify(self, **fields: str) -> bool:
        """Send one message of ``KEY=VALUE`` lines; ``True`` if it was sent.

        A failure is logged once and never raised: the daemon's work matters
        more than telling systemd about it (a missed watchdog ping ends in a
        restart, which is the point of the watchdog).
        """
        if self.address is None or not fields:
            return False
        payload = "\n".join(f"{k}={_one_line(v)}" for k, v in fields.items()).encode()
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop on a full receive queue.
                sock.setblocking(False)
                sock.sendto(payload, target)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify_failed", socket=self.address, error=str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """The daemon serves (buffer open, sources started), or a reload is done."""
        return self.notify(READY="1", **_status(status))

    def status(self, text: str) -> bool:
        """A one-line status for ``systemctl status``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """The event loop is alive."""
        return self.notify(WATCHDOG="1")

    def reloading(self, status: str | None = None) -> bool:
        """A reload starts; send :meth:`ready` when it is done (applied or rejected)."""
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match this to its request.
        monotonic_usec = str(time.monotonic_ns() // 1000)  # CLOCK_MONOTONIC on Linux
        return self.notify(RELOADING="1", MONOTONIC_USEC=monotonic_usec, **_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """The daemon is shutting down."""
        return self.notify(STOPPING="1", **_status(status))

    async def keep_alive(self) -> None:
        """Ping the watchdog from the event loop until cancelled; returns at once without one.

        Run it as a task of the daemon: if the loop stalls, the pings stop and
        systemd restarts the service.
        """
        interval = self.watchdog_interval()
        if interval is None or not self.enabled:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)


def _one_line(value: str) -> str:
    # A newline would start a new KEY=VALUE field.
    return " ".join(value.splitlines())


def _status(text: str | None) -> dict[str, str]:
    return {} if text is None else {"STATUS": text}
