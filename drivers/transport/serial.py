"""Serial transport (RS-485 adapters, ptys in tests) over pyserial-asyncio-fast."""

from __future__ import annotations

import asyncio
import os
import stat

import serial
import serial_asyncio_fast

from drivers.transport.base import StreamTransport, _Receiver


class SerialTransport(StreamTransport):
    """A serial port by path; reopened after the adapter disappears and returns.

    Parity defaults to even (8E1, DL/T 645); Modbus RTU lines use ``"N"``.
    Pseudo-terminals accept the parity setting and ignore it.
    """

    def __init__(
        self,
        port: str,
        *,
        baud: int = 2400,
        parity: str = "E",
        bytesize: int = 8,
        stopbits: int = 1,
        inter_frame_delay: float = 0.0,
        reopen_backoff: float = 0.05,
        reopen_backoff_max: float = 5.0,
    ) -> None:
        super().__init__(
            port,
            inter_frame_delay=inter_frame_delay,
            reopen_backoff=reopen_backoff,
            reopen_backoff_max=reopen_backoff_max,
        )
        self.port = port
        self.baud = baud
        self.parity = parity
        self.bytesize = bytesize
        self.stopbits = stopbits

    def char_time(self) -> float:
        """Seconds one character takes on the wire (start + data + parity + stop bits)."""
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baud

    async def _connect(self, rx: _Receiver) -> asyncio.BaseTransport:
        # Linux ptys refuse parity settings (EINVAL once PARENB is set) and
        # have no line to put parity bits on: open them without.
        return await self._open_with(rx, "N" if is_pty(self.port) else self.parity)

    async def _open_with(self, rx: _Receiver, parity: str) -> asyncio.BaseTransport:
        loop = asyncio.get_running_loop()
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            loop,
            lambda: rx,
            self.port,
            baudrate=self.baud,
            parity=_PARITY[parity],
            bytesize=self.bytesize,
            stopbits=self.stopbits,
            exclusive=True,
        )
        return transport


_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_PTY_MAJORS = range(136, 144)  # Unix98 pty slaves (/dev/pts/N)


def is_pty(port: str) -> bool:
    """True if ``port`` (or the device a symlink names) is a pseudo-terminal."""
    try:
        st = os.stat(port)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) in _PTY_MAJORS
