"""Exceptions that carry what a user needs to fix the problem: the file, key or URL."""


class XrdbenchError(Exception):
    """Base class for errors reported to users without a traceback."""


class ConfigError(XrdbenchError, ValueError):
    """An impossible or inconsistent configuration value; the message names the key."""


class SourceError(XrdbenchError, RuntimeError):
    """A structure source could not be read or fetched; the message names the file or URL."""
