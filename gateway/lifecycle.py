"""Long-lived parts as async context managers, written once.

The buffer, the status server and the demo's embedded broker are each
``async with Part(...) as part:``: enter starts it, leaving stops it. Their
``__aenter__``/``__aexit__`` were the same lines three times; here they are
once, with the one rule they share: a start that fails half way is stopped
before the error goes on, so a port that was bound or a thread that was begun
is released even though the ``async with`` body never runs. ``stop()`` must
therefore be safe on a part that never started or is already stopped.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class Lifecycle(abc.ABC):
    """A part started by ``start()`` and released by ``stop()``; ``async with`` does both."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Acquire what the part needs (listen, open, connect); raise naming what failed."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Release everything; safe to call twice and after a failed or missing start."""

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
