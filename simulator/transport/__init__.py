"""Byte transports the simulated buses sit on: pseudo-terminals and TCP."""
