"""The fault control API: a small HTTP interface on 127.0.0.1.

Endpoints (JSON in and out):

``GET /faults``
    ``{"faults": [{"target", "fault", "params", "remaining_s"}...]}`` (what is
    in force now; ``remaining_s`` is null for "until cleared").
``POST /faults``
    body ``{"target": "000000000003", "fault": "no_answer", "duration": 40,
    "params": {...}}`` (``duration`` and ``params`` optional) -> 201.
    Targets: a meter address (or ``modbus-name/unit``), a DL/T 645 bus name
    (fault ``dead``), a concentrator gw (``disconnect``, ``malformed``).
``DELETE /faults``
    clears every fault; ``DELETE /faults?target=NAME`` only that target's.
``GET /endpoints``
    where each bus listens.

Errors are 400 (bad body, unknown fault) or 404 (unknown target) with
``{"error": "..."}``.

Example: ``curl -X POST localhost:18090/faults -d '{"target":"rs485-1","fault":"dead",
"duration":30}'``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from simulator.scenario.runner import Scenario

log = logging.getLogger("simulator.control")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ControlServer:
    """Serves the fault API of a running scenario."""

    def __init__(self, scenario: Scenario, host: str = "127.0.0.1", port: int = 0) -> None:
        self.scenario = scenario
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_get("/faults", self._get)
        app.router.add_post("/faults", self._post)
        app.router.add_delete("/faults", self._delete)
        app.router.add_get("/endpoints", self._endpoints)
        self.app = app

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": self.scenario.active_faults()})

    async def _endpoints(self, request: web.Request) -> web.Response:
        eps = [{"name": e.name, "protocol": e.protocol, "where": e.where}
               for e in self.scenario.endpoints]  # fmt: skip
        return web.json_response({"endpoints": eps})

    async def _post(self, request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        target, fault = body.get("target"), body.get("fault")
        duration, params = body.get("duration"), body.get("params", {})
        if not isinstance(target, str) or not isinstance(fault, str):
            return _error(400, "'target' and 'fault' are required strings")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0
        ):
            return _error(400, "'duration' must be a positive number of seconds")
        if not isinstance(params, dict):
            return _error(400, "'params' must be an object")
        try:
            self.scenario.target(target)
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        try:
            self.scenario.set_fault(target, fault, duration, **params)
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        return web.json_response(
            {"target": target, "fault": fault, "duration": duration, "params": params},
            status=201,
        )

    async def _delete(self, request: web.Request) -> web.Response:
        target = request.query.get("target")
        try:
            self.scenario.clear_faults(target)
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        return web.json_response({"cleared": target or "all"})

    async def start(self) -> int:
        """Start listening; returns the bound port."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        log.info("control_listening host=%s port=%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
