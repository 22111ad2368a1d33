"""Errors that end a run with a clear message instead of a traceback (see main.py)."""


class MVLTError(Exception):
  """A problem the user can fix: bad config, missing data or checkpoint, diverged run."""


class ConfigError(MVLTError):
  pass


class NonFiniteLossError(MVLTError):
  pass
