"""metergw's data files, installed as the package ``metergw_data``.

Modbus register-map profiles (``profiles/``), example configs
(``examples/``, ``demo.toml``), simulator scenarios (``sim/``) and the
config's JSON Schema. Code finds them with
``importlib.resources.files("metergw_data")``; nothing here is Python.
"""
