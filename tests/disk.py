"""A small real filesystem to fill up: the tests of what a full disk does."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest


@asynccontextmanager
async def small_disk(where: Path, size: str = "2m") -> AsyncIterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` for the block (skips the test without root)."""
    await asyncio.to_thread(where.mkdir)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)]
    if (await asyncio.to_thread(subprocess.run, mount)).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield where
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", str(where)], check=True)
