"""Items from another thread (paho's network loop) to the event loop, in batches.

One ``call_soon_threadsafe`` per batch instead of per item: each call writes to the
loop's self-pipe and lets go of the GIL, and with one reading per message that cost
capped the ingest (bench phase a: gateway CPU per message from 189-221 us to
150-188 us). ``deque.append`` and ``popleft`` are atomic, so no lock is needed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    """``put`` from any thread; ``deliver`` runs on the loop for each item, in order,
    then ``after`` once per batch."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[T], None],
        after: Callable[[], None] = lambda: None,
    ) -> None:
        self._loop = loop
        self._deliver = deliver
        self._after = after
        self._items: deque[T] = deque()
        self._scheduled = False

    def put(self, item: T) -> None:
        """Queue ``item``; wake the loop unless a batch is already due."""
        self._items.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        # Cleared before the batch is taken: an item put after this point schedules the
        # next batch itself, so none waits for a wake-up that never comes.
        self._scheduled = False
        items = self._items
        while items:
            self._deliver(items.popleft())
        self._after()
