"""Pseudo-terminal serial lines.

The simulator keeps the master side of a pty pair and hands out the slave
device path (``/dev/pts/N``) for a client to open as if it were a USB-RS485
adapter. Given a link path, a symlink is made there to the device, so configs
can name a stable path (``var/demo/rs485-1``). The slave is kept open by the
simulator too, so a client may close and reopen it without the master seeing
end-of-file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable
from pathlib import Path


class PtyEndpoint:
    """The simulator's end of one pty pair.

    ``on_data`` is called with each chunk the client writes. :meth:`write`
    queues bytes for the client without blocking the event loop.
    """

    def __init__(self, on_data: Callable[[bytes], None], link: str | Path | None = None) -> None:
        self.on_data = on_data
        self.master_fd, self.slave_fd = os.openpty()
        tty.setraw(self.slave_fd)
        os.set_blocking(self.master_fd, False)
        self.path = os.ttyname(self.slave_fd)
        self.link = Path(link) if link is not None else None
        self._out = bytearray()
        self._loop = asyncio.get_running_loop()
        self._writing = False
        self._closed = False
        self._linked = False
        if self.link is not None:
            try:
                self._make_link(self.link)
            except OSError:
                self.close()
                raise
        self._loop.add_reader(self.master_fd, self._readable)

    def _make_link(self, link: Path) -> None:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            target = os.readlink(link)
            if link.exists():
                # A live device: another simulator is serving this link.
                raise FileExistsError(
                    f"{link} already links to {target}, a device in use "
                    "(another simulator running?); remove the link if it is stale"
                )
            link.unlink()  # left behind by a simulator that crashed
        elif link.exists():
            raise FileExistsError(f"{link} exists and is not a symlink")
        link.symlink_to(self.path)
        self._linked = True

    @property
    def device(self) -> str:
        """What a client should open: the link if one was made, else the device."""
        return str(self.link) if self.link is not None else self.path

    def _readable(self) -> None:
        try:
            data = os.read(self.master_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.on_data(data)

    def write(self, data: bytes) -> None:
        """Queue bytes for the client."""
        if self._closed or not data:
            return
        self._out += data
        self._flush()

    def _flush(self) -> None:
        while self._out:
            try:
                n = os.write(self.master_fd, self._out)
            except BlockingIOError:
                break
            except OSError:
                self._out.clear()
                break
            del self._out[:n]
        if self._out and not self._writing:
            self._writing = True
            self._loop.add_writer(self.master_fd, self._writable)
        elif not self._out and self._writing:
            self._writing = False
            self._loop.remove_writer(self.master_fd)

    def _writable(self) -> None:
        self._flush()

    def discard_input(self) -> None:
        """Drop bytes the client wrote that were not read yet."""
        with contextlib.suppress(OSError):
            while os.read(self.master_fd, 65536):
                pass

    def close(self) -> None:
        """Close both sides and remove the link."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.master_fd)
            if self._writing:
                self._loop.remove_writer(self.master_fd)
        for fd in (self.master_fd, self.slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._linked and self.link is not None:
            with contextlib.suppress(OSError):
                if os.readlink(self.link) == self.path:  # never remove another's link
                    self.link.unlink()


class PtyBridge:
    """Two pty pairs joined back to back, like ``socat pty pty``.

    A serial server that insists on opening a device path (pymodbus) opens
    :attr:`server_path`; the client opens :attr:`client_path` (or the link).
    """

    def __init__(self, link: str | Path | None = None) -> None:
        self.server_side = PtyEndpoint(lambda data: self.client_side.write(data))
        self.client_side = PtyEndpoint(self.server_side.write, link)

    @property
    def server_path(self) -> str:
        return self.server_side.path

    @property
    def client_path(self) -> str:
        return self.client_side.device

    def close(self) -> None:
        self.client_side.close()
        self.server_side.close()
