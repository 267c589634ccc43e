"""Fixtures for every test: the real servers of tests/servers.py."""

pytest_plugins = ["tests.servers"]
