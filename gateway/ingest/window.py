"""The ingest's window: messages received and not yet committed, bounded."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Window:
    """Messages received and not yet committed, bounded by count and by payload bytes.

    paho's network thread takes a place before it hands a message over, and waits while
    the window is full: TCP then pushes back and the broker queues (it must:
    ``max_queued_messages 0``). Each message holds its decoded rows until its commit, so
    this bounds memory however fast concentrators publish or however long the buffer
    fails. A message larger than the byte bound is taken when the window is empty.
    """

    def __init__(self, messages: int, nbytes: int) -> None:
        self.max_messages = messages
        self.max_bytes = nbytes
        self.messages = 0
        self.bytes = 0
        self._cond = threading.Condition()

    def take(self, size: int, stopping: Callable[[], bool]) -> bool:
        """Wait for a place for ``size`` bytes (paho's thread); False if stopping."""
        with self._cond:
            while self.messages >= self.max_messages or (
                self.messages and self.bytes + size > self.max_bytes
            ):
                if stopping():
                    return False
                self._cond.wait(1.0)
            self.messages += 1
            self.bytes += size
            return True

    def give_back(self, size: int) -> None:
        """A message was committed and acknowledged (event loop)."""
        with self._cond:
            self.messages -= 1
            self.bytes -= size
            self._cond.notify()
