"""Operations sections: logging and the status HTTP server."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.config.base import Section

LogLevel = Literal["debug", "info", "warning", "error"]


class LoggingConfig(Section):
    """``[logging]``: level, format, and per-component levels."""

    level: LogLevel = "info"
    """Level of every component not listed in ``components``."""
    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: readable on a TTY, JSON lines otherwise (journald, files, pipes)."""
    components: dict[str, LogLevel] = Field(default_factory=dict)
    """Per-component level, e.g. ``scheduler = "debug"`` (components: ``daemon``,
    ``scheduler``, ``buffer``, ``forward``, ``ingest``, ``status``, ``broker``...)."""


class HttpConfig(Section):
    """``[http]``: the status API (/healthz, /readyz, /status, /metrics)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """Listen address. The API has no authentication: keep it on loopback or
    behind a reverse proxy that adds it."""
    port: int = Field(default=8181, ge=0, le=65535)
    """TCP port; 0 picks a free one (tests)."""
    recent_events: int = Field(default=200, ge=1, le=10000)
    """How many recent events and errors ``/status`` keeps in memory."""
