"""The southbound scheduler: bus tasks, poll plans, on-demand reads, snapshots."""

from gateway.scheduler.scheduler import Scheduler
from gateway.scheduler.snapshot import BusSnapshot, MeterSnapshot, SchedulerSnapshot

__all__ = ["BusSnapshot", "MeterSnapshot", "Scheduler", "SchedulerSnapshot"]
