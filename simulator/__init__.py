"""metersim: fleets of simulated DL/T 645, Modbus and MQTT-concentrator meters.

The simulator speaks the real wire protocols (sharing only the codecs in
:mod:`protocols` with the gateway), from a deterministic meter model, with
faults on demand. In-process use (tests)::

    clock = SimClock(start=datetime(2026, 11, 23, tzinfo=UTC), speed=1.0)
    meter = SimMeter("000000000001", seed=1, clock=clock)
    async with Dlt645Bus([meter]) as bus:
        path = await bus.start_pty()

Whole scenarios: :func:`load_scenario` and :class:`Scenario`; the CLI is
``metersim`` (:mod:`simulator.cli`).
"""

from simulator.clock import SimClock
from simulator.concentrator.publisher import Concentrator
from simulator.dlt645.bus import Dlt645Bus
from simulator.meter.curve import DEFAULT_TARIFFS, TariffSchedule
from simulator.meter.meter import SimMeter
from simulator.modbus.server import ModbusServer
from simulator.scenario.model import ScenarioError, ScenarioFile, parse_scenario
from simulator.scenario.runner import Endpoint, Scenario, load_scenario

__all__ = [
    "DEFAULT_TARIFFS",
    "Concentrator",
    "Dlt645Bus",
    "Endpoint",
    "ModbusServer",
    "Scenario",
    "ScenarioError",
    "ScenarioFile",
    "SimClock",
    "SimMeter",
    "TariffSchedule",
    "load_scenario",
    "parse_scenario",
]
