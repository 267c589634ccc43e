"""Modbus meters served by pymodbus from register-map profiles."""
