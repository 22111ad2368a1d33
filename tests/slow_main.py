"""``main.py`` whose training feed hands each batch over late, so that a test can interrupt a
run in the middle (kill -9, SIGTERM) instead of at its end:

  python -m tests.slow_main SECONDS --config=... --workdir=...

The delay is the test's, not the training loop's: ``mvlt_jax.data.train_batches`` is wrapped
here, before ``main`` runs.
"""

import sys
import time

from absl import app
from absl import logging

from mvlt_jax import data


def _late(train_batches, delay_s: float):
  def batches(*args, **kwargs):
    for batch in train_batches(*args, **kwargs):
      time.sleep(delay_s)
      yield batch

  return batches


if __name__ == '__main__':
  delay = float(sys.argv.pop(1))
  data.train_batches = _late(data.train_batches, delay)
  import main  # pylint: disable=g-import-not-at-top  (defines the flags of main.py)

  logging.set_verbosity(logging.INFO)
  app.run(main.main)
