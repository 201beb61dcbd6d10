"""Typed YAML settings, layered: defaults file < config file < environment < ``--set`` overrides.

A daemon declares its schema (name -> Setting of a kind, kinds.py) and loads it (loading.py);
both are used through this package: ``from puli import config``.
"""
from .kinds import (Bool, Choice, Duration, Float, Int, Invalid, Kind, List, LogLevel, Mapping, Path,
                    RenderNodeName, Size, Str, Umask, Url, format_duration)
from .loading import (ConfigError, Setting, Settings, add_arguments, check, check_command, from_args,
                      load)

__all__ = ["Bool", "Choice", "Duration", "Float", "Int", "Invalid", "Kind", "List", "LogLevel",
           "Mapping", "Path", "RenderNodeName", "Size", "Str", "Umask", "Url", "format_duration", "ConfigError", "Setting",
           "Settings", "add_arguments", "check", "check_command", "from_args", "load"]
