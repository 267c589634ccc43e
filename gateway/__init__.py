"""The metergw daemon: config, polling, validation, buffer, forwarding, status."""
