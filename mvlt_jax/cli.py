"""What the command lines other than main.py share (prepare, convert, search): absl flags on
a ``FlagValues`` of each ``main()`` call's own (so that tests and notebooks call ``main([...])``
again and again), and ``--help``.
"""

from collections.abc import Sequence

from absl import flags

# absl's spellings of "help", answered with the usage text and the flags (no parsing).
HELP_ARGUMENTS = (
    '-h',
    '-?',
    '-help',
    '--help',
    '-helpshort',
    '--helpshort',
    '-helpfull',
    '--helpfull',
)


def help_requested(arguments: Sequence[str]) -> bool:
  """Whether ``arguments`` (after the program name; up to a ``--``) ask for help."""
  arguments = list(arguments)
  if '--' in arguments:
    arguments = arguments[: arguments.index('--')]
  return any(argument in HELP_ARGUMENTS for argument in arguments)


def help_text(usage: str, flag_values: flags.FlagValues) -> str:
  """The usage text, then the flags defined on ``flag_values``."""
  return usage + '\nflags:\n' + flag_values.get_help(include_special_flags=False)
