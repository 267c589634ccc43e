"""DL/T 645-2007 and DL/T 645-1997 meters: one plugin for both editions.

``config`` (the bus and meter models), ``reader`` (what the bus task
drives), ``line`` (the capacity estimate), ``commission`` (``metergw read``
and ``metergw scan``), ``plugin`` (the hooks the registry hands out).
"""

from gateway.southbound.dlt645.plugin import Dlt645Plugin

PLUGIN = Dlt645Plugin()
"""The plugin the registry lists."""

__all__ = ["PLUGIN", "Dlt645Plugin"]
