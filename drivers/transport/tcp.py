"""TCP transport: transparent serial servers and DTUs that carry the meter's bytes."""

from __future__ import annotations

import asyncio

from drivers.transport.base import StreamTransport, _Receiver


class TcpTransport(StreamTransport):
    """A TCP connection to ``host:port``, reconnected on the next use after it drops."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 3.0,
        inter_frame_delay: float = 0.0,
        reopen_backoff: float = 0.05,
        reopen_backoff_max: float = 5.0,
    ) -> None:
        super().__init__(
            f"{host}:{port}",
            inter_frame_delay=inter_frame_delay,
            reopen_backoff=reopen_backoff,
            reopen_backoff_max=reopen_backoff_max,
        )
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout

    async def _connect(self, rx: _Receiver) -> asyncio.BaseTransport:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            transport, _ = await loop.create_connection(lambda: rx, self.host, self.port)
        return transport
