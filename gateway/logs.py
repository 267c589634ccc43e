"""Structured logs: events with fields, JSON lines off a TTY, readable on one.

Every component logs through ``get_logger("scheduler")`` and friends, named
``metergw.<component>``; an entry is an event name plus fields
(``log.info("meter_went_offline", meter=..., bus=...)``). On a terminal the
output is aligned and coloured; anywhere else (journald, a file, a pipe) it is
one JSON object per line with ``timestamp``, ``level``, ``component`` and
``event``, so that ``jq`` and log shippers need no parsing rules.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from types import ModuleType
from typing import Any, TextIO


def _import_structlog() -> ModuleType:
    """Import structlog without rich.

    ``import structlog`` imports rich when it is installed (for coloured
    tracebacks on a console): about 5 MB of resident memory in a daemon that
    never shows one. Hiding rich for the duration of that import makes
    structlog fall back to plain tracebacks; the status and live-view commands
    import rich themselves afterwards as usual.
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog

        return structlog
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes "import rich" fail
    try:
        import structlog
    finally:
        del sys.modules["rich"]
    return structlog


structlog = _import_structlog()

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_PREFIX = "metergw."

# Libraries that narrate every packet or request at INFO; their warnings and
# errors still come through.
_CHATTY = ("amqtt", "transitions", "aiohttp.access", "pymodbus", "asyncio")


def _component(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``logger="metergw.scheduler"`` -> ``component="scheduler"`` (others keep their name)."""
    name = event_dict.pop("logger", None)
    if name:
        event_dict["component"] = name.removeprefix(_PREFIX)
    return event_dict


def configure(
    level: str = "info",
    fmt: str = "auto",
    components: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Set up structlog over stdlib logging; safe to call again (replaces the handler).

    ``components`` maps a component (``scheduler``, ``buffer``...) to its own
    level, which may be more or less verbose than ``level``.
    """
    out: TextIO = stream if stream is not None else sys.stderr
    tty = bool(getattr(out, "isatty", lambda: False)())
    json_out = fmt == "json" or (fmt == "auto" and not tty)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _component,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(default=str)
        if json_out
        else structlog.dev.ConsoleRenderer(colors=tty)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.set_name("metergw")
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
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "metergw"]
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    debug_all = level == "debug"
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if debug_all else logging.WARNING)
    # Forget levels of a previous configure() so that a reload starts clean.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(_PREFIX):
            logging.getLogger(name).setLevel(logging.NOTSET)
    for name, lvl in (components or {}).items():
        logging.getLogger(f"{_PREFIX}{name}").setLevel(_LEVELS[lvl])


def get_logger(component: str) -> Any:
    """A structlog logger for one component (``scheduler``, ``buffer``, ...)."""
    return structlog.stdlib.get_logger(f"{_PREFIX}{component}")
