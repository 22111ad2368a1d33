"""Errors that end a run with a clear message instead of a traceback (see main.py)."""


class MVLTError(Exception):
  """A problem the user can fix: bad config, missing data or checkpoint, diverged run.

  The one root of every error a user sees (``input_pipeline.errors.PrepareError`` derives
  from it too); every command line prints it as one ``error: ...`` line.
  """


class ConfigError(MVLTError):
  pass


class NonFiniteLossError(MVLTError):
  pass
