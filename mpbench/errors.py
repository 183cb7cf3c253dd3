"""Errors that end a run with one clear line instead of a traceback."""


class ConfigError(ValueError):
    """A bad setting: the message names the key, the value and what would be valid."""
