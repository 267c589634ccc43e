"""The protocol registry: protocol names -> the plugin that serves them.

A meter protocol is a plugin (:class:`ProtocolPlugin`): its config models,
the reader the bus task drives, the checks ``check-config`` runs, its share of
the line for the capacity estimate, and what ``metergw read`` and ``metergw
scan`` do with it. Config (``[[buses]]`` is the union of the plugins' bus
models), the scheduler, the CLI, the docs and the JSON Schema ask this
module; none of them names a protocol.

The built-in plugins are listed once, in :func:`_builtin` (imported on first
use, so that importing the config does not load the drivers); more can be
added at run time with :func:`register` (a test's toy protocol, say).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.checks import Finding
from gateway.config.southbound import BusConfig, MeterConfig, PollGroupConfig

if TYPE_CHECKING:
    from gateway.cli.read import Row
    from gateway.cli.scan import Progress
    from gateway.cli.snippet import Found
    from gateway.config.validation import ValidationOverride
    from gateway.southbound.reader import MeterReader


class ProtocolPlugin:
    """One meter protocol, or a family of them (``names``) that share one bus model.

    Subclass it and override :meth:`open_reader` (required) and any hook whose
    default does not fit; the defaults say "this protocol has none of that".
    The CLI hooks take the parsed ``argparse`` namespace of ``metergw read`` or
    ``metergw scan``.
    """

    names: tuple[str, ...] = ()
    """The ``protocol`` values this plugin serves (each in exactly one plugin)."""
    bus_model: type[BusConfig] = BusConfig
    """Its ``[[buses]]`` model: a :class:`BusConfig` with ``protocol`` narrowed to
    :attr:`names` and a ``meters`` list of its own meter model."""
    noun: str = "meter"
    """What a device on its line is called in messages (``meter``, ``unit``)."""
    cli_serial: tuple[int, str] = (2400, "E")
    """The baud rate and parity ``read`` and ``scan`` use without ``--baud``/``--parity``."""

    def open_reader(
        self,
        bus: BusConfig,
        *,
        profile_dirs: Sequence[Path] = (),
        on_discard: Callable[[str], None] | None = None,
    ) -> MeterReader:
        """The reader of ``bus`` (its link not opened yet: no I/O). ``on_discard`` is
        told why line noise was thrown away, for the metrics."""
        raise NotImplementedError(f"{type(self).__name__}.open_reader")

    def check(
        self, bus: BusConfig, groups: Mapping[str, PollGroupConfig], profile_dirs: Sequence[Path]
    ) -> list[Finding]:
        """What the protocol's tables say is wrong with ``bus``'s meters (quantities it
        cannot read, a profile that is missing), before any I/O; each location is within
        the bus (``meters[2].poll``)."""
        return []

    def poll_seconds(
        self, bus: BusConfig, meter: MeterConfig, keys: Sequence[str], profile_dirs: Sequence[Path]
    ) -> float | None:
        """How long one poll of ``keys`` from ``meter`` holds the line, typically; ``None``
        when it cannot be told (the meter is then left out of the capacity estimate)."""
        return None

    def meter_validation(
        self, meter: MeterConfig, profile_dirs: Sequence[Path]
    ) -> ValidationOverride | None:
        """VEE thresholds the protocol's own tables set for ``meter`` (a Modbus profile's
        ``[validation]``), under the meter's own ``validation`` table."""
        return None

    # metergw read / metergw scan -------------------------------------------------

    def add_read_arguments(self, p: argparse.ArgumentParser) -> None:
        """Options of ``metergw read`` this protocol needs (named for it: ``--addr``)."""

    def read_target(self, args: argparse.Namespace) -> str:
        """The meter ``metergw read`` asks, in messages (``meter 000000000001``)."""
        return self.noun

    async def read(self, args: argparse.Namespace) -> list[Row]:
        """``metergw read``: the meter's values as table rows; raise
        :class:`gateway.cli.read.UsageError` for arguments that do not fit."""
        from gateway.cli.read import UsageError

        raise UsageError(f"--protocol {args.protocol}: no one-shot read")

    def add_scan_arguments(self, p: argparse.ArgumentParser) -> None:
        """Options of ``metergw scan`` this protocol needs."""

    def scan_probes(self, args: argparse.Namespace) -> int:
        """How many probes ``metergw scan`` will send (for its progress line)."""
        return 1

    async def scan(self, args: argparse.Namespace, progress: Progress) -> list[Found]:
        """``metergw scan``: the meters that answered (``progress`` told of each probe)."""
        from gateway.cli.read import UsageError

        raise UsageError(f"--protocol {args.protocol}: no scan")

    def scan_hint(self, args: argparse.Namespace) -> str | None:
        """A comment for the operator when a scan found nothing."""
        return None

    def snippet_groups(
        self, args: argparse.Namespace, found: Sequence[Found]
    ) -> tuple[list[str], dict[str, tuple[str, list[str]]]]:
        """Comment lines, and poll groups (name -> (interval, quantities)) for the
        snippet of a scan; by default the scan templates' quantities every meter answered."""
        from gateway.cli.snippet import poll_groups

        return [], poll_groups(found, by_kind=False)

    def snippet_meter(self, args: argparse.Namespace, found: Found) -> list[str]:
        """The keys of one ``[[buses.meters]]`` table for a meter a scan found."""
        return [f"# {self.noun} {found.ident}: give the keys that find it on its line"]

    def connect_timeout(self, args: argparse.Namespace) -> float:
        """How long ``read`` and ``scan`` wait for the link to open (for messages)."""
        return float(args.timeout)


_BY_NAME: dict[str, ProtocolPlugin] = {}
_LOADED = False


def _builtin() -> list[ProtocolPlugin]:
    """The plugins that ship with metergw: one line per protocol family."""
    from gateway.southbound.dlt645 import PLUGIN as DLT645
    from gateway.southbound.modbus import PLUGIN as MODBUS

    return [DLT645, MODBUS]


def _ensure() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for plugin in _builtin():
            register(plugin)


def register(plugin: ProtocolPlugin) -> None:
    """Add ``plugin``: from now on its names are valid ``protocol`` values everywhere
    (config, scheduler, CLI, schema). A name already served is a :class:`ValueError`."""
    _ensure()
    if not plugin.names:
        raise ValueError(f"{type(plugin).__name__}: a plugin serves at least one protocol name")
    for name in plugin.names:
        if name in _BY_NAME:
            raise ValueError(f"protocol {name!r} is already served by {_BY_NAME[name]!r}")
    for name in plugin.names:
        _BY_NAME[name] = plugin


def unregister(plugin: ProtocolPlugin) -> None:
    """Remove ``plugin`` (a test's, when it is done)."""
    for name in plugin.names:
        if _BY_NAME.get(name) is plugin:
            del _BY_NAME[name]


@contextlib.contextmanager
def registered(plugin: ProtocolPlugin) -> Iterator[ProtocolPlugin]:
    """``plugin`` registered for the ``with`` block."""
    register(plugin)
    try:
        yield plugin
    finally:
        unregister(plugin)


def plugin_for(protocol: str) -> ProtocolPlugin:
    """The plugin serving ``protocol``; :class:`KeyError` naming the known ones."""
    _ensure()
    try:
        return _BY_NAME[protocol]
    except KeyError:
        raise KeyError(f"no protocol {protocol!r} (known: {', '.join(protocol_names())})") from None


def protocol_names() -> tuple[str, ...]:
    """Every protocol name, in registration order (the one list of them)."""
    _ensure()
    return tuple(_BY_NAME)


def plugins() -> tuple[ProtocolPlugin, ...]:
    """Every plugin once, in registration order."""
    _ensure()
    return tuple(dict.fromkeys(_BY_NAME.values()))
