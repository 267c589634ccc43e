"""What an operator looks at: the status HTTP API and the state behind it."""

from gateway.status.http import StatusServer, StatusServerError
from gateway.status.recent import RecentEvents, RecentLogHandler
from gateway.status.report import StatusModel, gateway_version
from gateway.status.tap import ConcentratorSeen, MeterSeen, Tap

__all__ = [
    "ConcentratorSeen",
    "MeterSeen",
    "RecentEvents",
    "RecentLogHandler",
    "StatusModel",
    "StatusServer",
    "StatusServerError",
    "Tap",
    "gateway_version",
]
