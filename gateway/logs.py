"""Structured logs: events with fields, JSON lines off a TTY, readable on one."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(
    level: str = "info",
    fmt: str = "auto",
    components: Mapping[str, str] | None = None,
    stream: Any = None,
) -> None:
    """Set up structlog over stdlib logging.

    ``components`` maps a logger name (``scheduler``, ``buffer``...) to its own
    level. Loggers are named ``metergw.<component>``.
    """
    stream = stream if stream is not None else sys.stderr
    json_out = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_out
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    for name, lvl in (components or {}).items():
        logging.getLogger(f"metergw.{name}").setLevel(_LEVELS[lvl])


def get_logger(component: str) -> Any:
    """A structlog logger for one component (``scheduler``, ``buffer``, ...)."""
    return structlog.stdlib.get_logger(f"metergw.{component}")
