"""What a command line shows: the project's own lines, the warnings that matter, an unbroken
progress bar.

Libraries log a lot at INFO (orbax: hundreds of lines per run; TFDS; TensorFlow's C++ side).
``quiet_libraries`` turns that off unless the user asks for it with absl's ``--verbosity=0``
(INFO; ``--verbosity=1``: DEBUG): the absl log then shows warnings and errors only, minus
the orbax warnings that say nothing to a user (``NOISE``). The project's own progress and
results are printed, not logged, so they show either way.
"""

import logging as python_logging
import os

from absl import logging

# orbax warnings that are expected in normal runs: a checkpoint item saved without step
# metadata (every variables-only load), and the wait for the previous asynchronous save.
NOISE = (
    'Metadata file does not exist',
    'Waiting for previous save to complete',
)


class _DropNoise(python_logging.Filter):

  def filter(self, record: python_logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(part in message for part in NOISE)


def quiet_tensorflow() -> None:
  """TensorFlow's C++ start-up lines (oneDNN notice, INFO logs) off; call before TensorFlow is
  imported. The input pipeline's TensorFlow ops (decode, resize, casts) do not use oneDNN's
  math, so turning its custom operations off changes no result."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')


def quiet_libraries(verbosity_given: bool) -> None:
  """Library INFO logs and known noise off, unless ``--verbosity`` was given."""
  quiet_tensorflow()
  if verbosity_given:
    return
  logging.set_verbosity(logging.WARNING)
  logging.get_absl_handler().addFilter(_DropNoise())
