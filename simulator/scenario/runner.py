"""Running a scenario: build the fleet, start every endpoint, play the faults.

``load_scenario(path)`` gives a :class:`Scenario` (built, not started);
``async with scenario:`` starts the buses, Modbus servers, concentrators,
the fault timeline and the control API, and stops them all on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from simulator.clock import SimClock
from simulator.concentrator.publisher import Concentrator
from simulator.dlt645.bus import Dlt645Bus
from simulator.meter.curve import DEFAULT_TARIFFS
from simulator.meter.faults import FaultSet
from simulator.meter.meter import SimMeter
from simulator.modbus.server import ModbusServer
from simulator.scenario.model import ScenarioError, ScenarioFile, read_scenario_file

log = logging.getLogger("simulator.scenario")


class FaultTarget(Protocol):
    """Anything faults can be set on: a meter, a bus, a concentrator."""

    faults: FaultSet

    def set_fault(self, fault: str, duration: float | None = None, **params: Any) -> None: ...

    def clear_faults(self, fault: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one bus, server or concentrator listens (or publishes to)."""

    name: str
    protocol: str
    where: str

    def __str__(self) -> str:
        return f"{self.name}\t{self.protocol}\t{self.where}"


def meter_seed(seed: int, address: str) -> int:
    """A meter's seed from the scenario seed and its address (stable across runs)."""
    tail = int(address) if address.isdigit() else zlib.crc32(address.encode())
    return seed * 1_000_003 + tail


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


class Scenario:
    """A built fleet. ``control_port`` overrides the file's control port (None: as filed)."""

    def __init__(self, spec: ScenarioFile, *, control_port: int | None = None) -> None:
        sim = spec.simulation
        self.spec = spec
        self.clock = SimClock(sim.start, sim.speed)
        tariffs = sim.schedule() or DEFAULT_TARIFFS
        self.meters: dict[str, SimMeter] = {}
        self.buses: dict[str, Dlt645Bus] = {}
        self.modbus: dict[str, ModbusServer] = {}
        self.concentrators: dict[str, Concentrator] = {}
        self._plans: list[tuple[str, Any, str | None, str | None]] = []
        self.endpoints: list[Endpoint] = []
        self.control_port = control_port
        self._tasks: list[asyncio.Task[None]] = []
        self._control: Any = None
        self.started_at = 0.0

        def meter(
            address: str,
            protocol: str,
            peak_kw: float | None = None,
            load_profile: bool = True,
            phases: int = 3,
        ) -> SimMeter:
            m = SimMeter(
                address,
                seed=meter_seed(sim.seed, address),
                clock=self.clock,
                tz=sim.tz,
                peak_kw=peak_kw,
                tariffs=tariffs,
                history_days=sim.history_days,
                protocol=protocol,
                load_profile=load_profile,
                phases=phases,
            )
            self.meters[address] = m
            return m

        for bus_spec in spec.dlt645:
            for copy in range(bus_spec.repeat):
                name = bus_spec.name if bus_spec.repeat == 1 else f"{bus_spec.name}-{copy + 1}"
                meters = [
                    meter(
                        a,
                        bus_spec.variant,
                        bus_spec.peak_kw,
                        bus_spec.load_profile,
                        bus_spec.phases_of(a),
                    )
                    for a in bus_spec.addresses(copy)
                ]
                bus = Dlt645Bus(
                    meters,
                    bus_spec.variant,
                    bus_spec.baud,
                    bus_spec.parity,
                    bus_spec.emulate_timing,
                    bus_spec.turnaround,
                    name=name,
                )
                self.buses[name] = bus
                self._plans.append((name, bus, bus_spec.pty, _shift(bus_spec.tcp, copy)))
        for mb in spec.modbus:
            for copy in range(mb.repeat):
                name = mb.name if mb.repeat == 1 else f"{mb.name}-{copy + 1}"
                units = {u: meter(f"{name}/{u}", "modbus") for u in mb.units}
                try:
                    server = ModbusServer(mb.profile, units, baud=mb.baud, name=name)
                except ValueError as exc:
                    raise ScenarioError(f"{spec.source}: modbus {name}: {exc}") from None
                self.modbus[name] = server
                self._plans.append((name, server, mb.pty, _shift(mb.tcp, copy)))
        for cs in spec.concentrator:
            for copy in range(cs.repeat):
                gw = cs.gw if cs.repeat == 1 else f"{cs.gw}-{copy + 1}"
                meters = [meter(a, cs.proto) for a in cs.addresses(copy)]
                self.concentrators[gw] = Concentrator(
                    gw,
                    _split(cs.broker),
                    meters,
                    rate=cs.rate,
                    interval=cs.interval,
                    batch=cs.batch,
                    backlog=cs.backlog,
                    seq_file=_numbered(cs.seq_file, copy, cs.repeat),
                )
        for i, fault in enumerate(spec.faults):
            try:
                self.target(fault.target)
            except KeyError as exc:
                raise ScenarioError(f"{spec.source}: faults.{i}.target: {exc.args[0]}") from None

    # ------------------------------------------------------------------ faults

    def target(self, name: str) -> FaultTarget:
        """The meter, bus or concentrator called ``name``; KeyError naming it."""
        found: FaultTarget | None = (
            self.meters.get(name) or self.buses.get(name) or self.concentrators.get(name)
        )
        if found is None:
            raise KeyError(f"no meter, bus or concentrator called {name!r}")
        return found

    def targets(self) -> dict[str, FaultTarget]:
        return {**self.meters, **self.buses, **self.concentrators}

    def set_fault(
        self, target: str, fault: str, duration: float | None = None, **params: Any
    ) -> None:
        """Set a fault on a target by name (ValueError/KeyError name what is wrong)."""
        self.target(target).set_fault(fault, duration, **params)
        log.info("fault_set target=%s fault=%s duration=%s", target, fault, duration)

    def clear_faults(self, target: str | None = None) -> None:
        """Clear every fault, or those of one target."""
        targets = [self.target(target)] if target is not None else self.targets().values()
        for t in targets:
            t.clear_faults()
        for bus in self.buses.values():
            if target is None or bus.name == target:
                bus.dead = False

    def active_faults(self) -> list[dict[str, Any]]:
        """Every fault in force: target, fault, params, remaining seconds (None = until cleared)."""
        out = []
        for name, t in self.targets().items():
            if not t.faults:
                continue
            for f in t.faults.active():
                out.append(
                    {
                        "target": name,
                        "fault": f.name,
                        "params": dict(f.params),
                        "remaining_s": f.remaining(),
                    }
                )
        return out

    async def _timeline(self) -> None:
        for fault in sorted(self.spec.faults, key=lambda f: f.at):
            delay = self.started_at + fault.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                self.set_fault(fault.target, fault.fault, fault.duration, **fault.params)
            except (KeyError, ValueError, TypeError) as exc:
                log.error("fault_rejected target=%s fault=%s reason=%s",
                          fault.target, fault.fault, exc)  # fmt: skip

    # --------------------------------------------------------------- lifecycle

    async def start(self) -> list[Endpoint]:
        """Start everything; returns where each bus listens."""
        self.started_at = time.monotonic()
        try:
            for name, obj, pty, tcp in self._plans:
                kind = obj.variant.value if isinstance(obj, Dlt645Bus) else "modbus"
                if pty is not None:
                    where = await obj.start_pty(pty or None)
                    proto = kind if isinstance(obj, Dlt645Bus) else "modbus-rtu"
                else:
                    assert tcp is not None
                    host, port = _split(tcp)
                    bound = await obj.start_tcp(host, port)
                    where = f"{host}:{bound}"
                    proto = f"{kind}-tcp" if isinstance(obj, Dlt645Bus) else "modbus-tcp"
                self.endpoints.append(Endpoint(name, proto, where))
            for gw, conc in self.concentrators.items():
                await conc.start()
                host, port = conc.broker
                self.endpoints.append(Endpoint(gw, "mqtt", f"{host}:{port}"))
            control = self.spec.control
            if control is not None or self.control_port is not None:
                try:
                    from simulator.control import ControlServer
                except ImportError:  # aiohttp is the [sim] extra
                    raise ScenarioError(
                        f"{self.spec.source}: control: the control API needs aiohttp: "
                        "pip install 'metergw[sim]' (or drop [control])"
                    ) from None

                host = control.host if control is not None else "127.0.0.1"
                port = self.control_port if self.control_port is not None else control.port  # type: ignore[union-attr]
                self._control = ControlServer(self, host, port)
                bound = await self._control.start()
                self.endpoints.append(Endpoint("control", "http", f"{host}:{bound}"))
        except BaseException:
            await self.stop()
            raise
        self._tasks.append(asyncio.create_task(self._timeline(), name="scenario-faults"))
        return list(self.endpoints)

    async def stop(self) -> None:
        """Stop everything that was started."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._control is not None:
            await self._control.stop()
            self._control = None
        for conc in self.concentrators.values():
            await conc.stop()
        for bus in self.buses.values():
            await bus.stop()
        for server in self.modbus.values():
            await server.stop()

    async def __aenter__(self) -> Scenario:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _shift(tcp: str | None, copy: int) -> str | None:
    """``host:port`` of the ``copy``-th repetition (port + copy; port 0 stays 0)."""
    if tcp is None or copy == 0:
        return tcp
    host, port = _split(tcp)
    return f"{host}:{port + copy if port else 0}"


def _numbered(path: str | None, copy: int, repeat: int) -> str | None:
    if path is None or repeat == 1:
        return path
    return f"{path}.{copy + 1}"


def load_scenario(path: str | Path, *, control_port: int | None = None) -> Scenario:
    """Read, validate and build a scenario file (not started yet)."""
    return Scenario(read_scenario_file(path), control_port=control_port)
