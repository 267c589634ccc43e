"""Fast encoding of ``metergw.readings/1`` batches.

The schema lives in :mod:`protocols.concentrator` (pydantic). Building
pydantic models for tens of thousands of readings a second costs more than
the broker does, so the hot path fills string templates whose constant parts
(meter reference, point ids, keys, units) were serialised once with orjson.
Tests validate the output with :func:`protocols.concentrator.parse_readings`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import orjson

from protocols.concentrator import READINGS_SCHEMA
from protocols.quantities import QUANTITIES
from simulator.meter.meter import SimMeter

# DL/T 645-2007 data identifiers the points carry as "id".
POINT_IDS = {
    "energy_import_total_kwh": "00010000",
    "energy_import_t1_kwh": "00010100",
    "energy_import_t2_kwh": "00010200",
    "energy_import_t3_kwh": "00010300",
    "energy_import_t4_kwh": "00010400",
    "power_active_total_kw": "02030000",
    "voltage_l1_v": "02010100",
    "current_l1_a": "02020100",
}
DEFAULT_POINTS = (
    "energy_import_total_kwh",
    "energy_import_t1_kwh",
    "energy_import_t2_kwh",
    "energy_import_t3_kwh",
    "energy_import_t4_kwh",
    "power_active_total_kw",
)


def rfc3339(ts: float) -> str:
    """UTC seconds -> ``2026-11-23T10:20:30.123Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _kwh(hundredths: int) -> str:
    whole, cents = divmod(hundredths, 100)
    return f"{whole}.{cents:02d}"


def _point_template(key: str) -> str:
    if key not in QUANTITIES:
        raise ValueError(f"unknown quantity key {key!r} in concentrator points")
    head: dict[str, str] = {}
    if key in POINT_IDS:
        head["id"] = POINT_IDS[key]
    head["key"] = key
    prefix = orjson.dumps(head).decode()[:-1]
    unit = orjson.dumps(QUANTITIES[key].unit).decode()
    return prefix.replace("%", "%%") + ',"v":%s,"u":' + unit + ',"q":0}'


class BatchEncoder:
    """Encodes the readings of a set of meters for one concentrator."""

    def __init__(self, gw: str, points: Sequence[str] = DEFAULT_POINTS) -> None:
        self.gw = gw
        self.points = tuple(points)
        if not self.points:
            raise ValueError("a concentrator needs at least one point per reading")
        self._head = '{"schema":"' + READINGS_SCHEMA + '","gw":' + orjson.dumps(gw).decode()
        self._fast = self.points == DEFAULT_POINTS
        self._template = (
            '{"meter":%s,"ts":"%s","points":['
            + ",".join(_point_template(k) for k in self.points)
            + "]}"
        )
        self._refs: dict[int, str] = {}

    def _ref(self, meter: SimMeter) -> str:
        ref = self._refs.get(id(meter))
        if ref is None:
            proto = meter.protocol if meter.protocol in ("dlt645-2007", "dlt645-1997") else "other"
            ref = orjson.dumps({"addr": meter.address, "proto": proto}).decode()
            self._refs[id(meter)] = ref
        return ref

    def reading(self, meter: SimMeter, ts: float, ts_text: str) -> str:
        """One reading (meter at one instant) as a JSON object."""
        if self._fast:
            t1, t2, t3, t4 = meter.tariff_hundredths(ts)
            total = t1 + t2 + t3 + t4
            kw = meter.energy.power_kw(ts)
            return self._template % (
                self._ref(meter),
                ts_text,
                _kwh(total),
                _kwh(t1),
                _kwh(t2),
                _kwh(t3),
                _kwh(t4),
                f"{kw:.4f}",
            )
        values = meter.values(ts)
        return self._template % (self._ref(meter), ts_text, *(str(values[k]) for k in self.points))

    def batch(self, seq: int, ts: float, meters: Iterable[SimMeter]) -> bytes:
        """A whole message: every meter read at ``ts``."""
        ts_text = rfc3339(ts)
        body = ",".join(self.reading(m, ts, ts_text) for m in meters)
        return f'{self._head},"seq":{seq},"ts":"{ts_text}","readings":[{body}]}}'.encode()


def malformed_payloads(gw: str) -> list[bytes]:
    """Payloads a broken concentrator sends; none of them validates."""
    ts = rfc3339(0)
    return [
        b'{"schema":"metergw.readings/1","gw":"' + gw.encode() + b'","seq":',
        orjson.dumps({"schema": "metergw.readings/0", "gw": gw, "seq": 0, "ts": ts,
                      "readings": []}),
        orjson.dumps({"schema": READINGS_SCHEMA, "gw": gw, "seq": -1, "ts": ts,
                      "readings": []}),
        orjson.dumps({"schema": READINGS_SCHEMA, "gw": gw, "seq": 1, "ts": ts, "readings": [
            {"meter": {"addr": "1", "proto": "dlt645-2007"}, "ts": ts,
             "points": [{"key": "no_such_quantity", "v": 1}]}]}),
        b"\xff\xfe not json",
    ]  # fmt: skip
