"""mvlt-jax: one program for every task; ``config.task`` selects it.

python main.py --config=configs/demo.py --workdir=workdirs/demo
python main.py --config=configs/pretrain.py --workdir=DIR --config.task=summary
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.', lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])

# Tasks that are functions of mvlt_jax.evaluators of the same name (each writes WORKDIR/results/).
EVALUATION_TASKS = ('eval_retrieval', 'eval_recognition', 'reconstruct')


def run_task(config, workdir: str) -> None:
  """Runs ``config.task``."""
  if config.task == 'summary':
    from mvlt_jax import summary  # pylint: disable=import-outside-toplevel

    print(summary.format_summary(config.model))
    return
  if config.task == 'train':
    from mvlt_jax import train  # pylint: disable=import-outside-toplevel

    train.train_and_evaluate(config, workdir)
    if config.eval_after_training:
      from mvlt_jax import evaluators  # pylint: disable=import-outside-toplevel

      evaluators.run_demo_evaluation(config, workdir)
    return
  if config.task in EVALUATION_TASKS:
    from mvlt_jax import evaluators  # pylint: disable=import-outside-toplevel

    getattr(evaluators, config.task)(config, workdir)
    return
  raise app.UsageError(
      f'Unknown config.task {config.task!r}; available: summary, train, '
      f'{", ".join(EVALUATION_TASKS)}.'
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from input_pipeline.errors import PrepareError  # pylint: disable=import-outside-toplevel
  from mvlt_jax.errors import MVLTError  # pylint: disable=import-outside-toplevel

  try:
    run_task(flags.FLAGS.config, _WORKDIR.value)
  except (MVLTError, PrepareError) as e:
    # A problem the user can fix: the message names it; no traceback.
    logging.error('%s: %s', type(e).__name__, e)
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  logging.set_verbosity(logging.INFO)
  app.run(main)
