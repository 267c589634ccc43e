"""The gateway's configuration: one TOML file, validated completely before any I/O."""

from gateway.config.loader import ConfigError, Problem, load_config, parse_config
from gateway.config.model import Config

__all__ = ["Config", "ConfigError", "Problem", "load_config", "parse_config"]
