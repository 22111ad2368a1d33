"""Errors that end a run with a clear message instead of a traceback (see main.py)."""

_ESCAPES = {'\n': '\\n', '\r': '\\r', '\t': '\\t'}


def printable(text: object) -> str:
  """``text`` with every non-printable character escaped as ``repr`` does (``\\x1b``,
  ``\\n``, ``\\u202e``, ``\\ud800``), the rest kept as is.

  Names that come from the input (paths, ids, categories) go through it before they are
  printed: a control character in a file name or an id cannot move the cursor, clear or
  retitle the terminal, and a lone surrogate cannot make ``print`` fail.
  """
  text = str(text)
  if text.isprintable():
    return text
  out = []
  for char in text:
    if char.isprintable():
      out.append(char)
    elif char in _ESCAPES:
      out.append(_ESCAPES[char])
    elif ord(char) < 0x100:
      out.append(f'\\x{ord(char):02x}')
    elif ord(char) < 0x10000:
      out.append(f'\\u{ord(char):04x}')
    else:
      out.append(f'\\U{ord(char):08x}')
  return ''.join(out)


class MVLTError(Exception):
  """A problem the user can fix: bad config, missing data or checkpoint, diverged run.

  The one root of every error a user sees (``input_pipeline.errors.PrepareError`` derives
  from it too); every command line prints it as one ``error: ...`` line.
  """


class ConfigError(MVLTError):
  pass


class NonFiniteLossError(MVLTError):
  pass
