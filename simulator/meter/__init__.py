"""The meter model: load curve, energy registers, clock, records and faults."""
