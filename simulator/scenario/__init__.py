"""Scenario files: a fleet of buses, servers and concentrators with a fault timeline."""
