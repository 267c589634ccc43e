"""Modbus (RTU, TCP, RTU over TCP) master session and the request-merging planner."""

from drivers.modbus.planner import ReadBlock, RegisterSpan, plan_reads
from drivers.modbus.session import ModbusSession

__all__ = ["ModbusSession", "ReadBlock", "RegisterSpan", "plan_reads"]
