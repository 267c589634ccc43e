"""Operations sections: logging and the status HTTP server."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.config.base import Section

LogLevel = Literal["debug", "info", "warning", "error"]


class LoggingConfig(Section):
    """``[logging]``: level, format, and per-component levels."""

    level: LogLevel = "info"
    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: readable on a TTY, JSON lines otherwise."""
    components: dict[str, LogLevel] = Field(default_factory=dict)
    """Per-component level, e.g. ``scheduler = "debug"``."""


class HttpConfig(Section):
    """``[http]``: the status API (/healthz, /readyz, /status, /metrics)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8181, ge=0, le=65535)
