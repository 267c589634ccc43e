"""DL/T 645 (2007 and 1997) master session over a serial or TCP transport."""

from drivers.dlt645.session import WILDCARD, Dlt645Session

__all__ = ["WILDCARD", "Dlt645Session"]
