"""The gateway's configuration: one TOML file, validated completely before any I/O."""

from gateway.config.loader import (
    CheckedConfig,
    ConfigError,
    Problem,
    check_config,
    check_config_file,
    load_config,
    parse_config,
)
from gateway.config.model import Config

__all__ = [
    "CheckedConfig",
    "Config",
    "ConfigError",
    "Problem",
    "check_config",
    "check_config_file",
    "load_config",
    "parse_config",
]
