"""``make demo`` and what only the demo needs: the launcher, the live view, the embedded broker.

Nothing here is imported by the daemon's start path, except
:mod:`gateway.demo.broker`, and that only when a config enables
``[embedded_broker]``. Its dependencies (amqtt, aiohttp) come with the
``metergw[demo]`` extra; this ``__init__`` imports none of them, so that the
daemon can import the broker module without pulling in the rest.
"""
