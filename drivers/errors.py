"""Typed errors of the drivers: one family, named for what went wrong.

The scheduler decides what each means (a miss, a device problem, a link
fault); drivers never return error objects where an exception is meant.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base of every error a driver raises."""


class Timeout(DriverError):
    """No valid reply arrived in time."""


class FrameError(DriverError):
    """A reply arrived but its content cannot be used (malformed payload, wrong data)."""


class DeviceError(DriverError):
    """The device answered with an error: DL/T 645 error flags or a Modbus exception code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
        """The device's own error code (DL/T 645 error byte, Modbus exception code)."""


class LinkError(DriverError):
    """The link itself is unusable: port gone, connection refused or lost."""

    def __init__(self, message: str, link: str) -> None:
        super().__init__(message)
        self.link = link
        """The port path or ``host:port`` the error is about."""
