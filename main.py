"""mvlt-jax: one program for every task; ``config.task`` selects it.

Library logs are off unless ``--verbosity=0`` (absl's flag; mvlt_jax/console.py).

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


def run_task(config, workdir: str) -> None:
  """Runs ``config.task`` (checked first: ``config_check``)."""
  from mvlt_jax import config_check  # pylint: disable=import-outside-toplevel

  config_check.check_config(config)
  if config.task == config_check.SUMMARY_TASK:
    from mvlt_jax import summary  # pylint: disable=import-outside-toplevel

    print(summary.format_summary(config.model))
    return
  config_check.check_workdir(workdir)
  if config.task == config_check.TRAIN_TASK:
    from mvlt_jax import train  # pylint: disable=import-outside-toplevel

    train.train_and_evaluate(config, workdir)
    if config.eval_after_training:
      from mvlt_jax import evaluators  # pylint: disable=import-outside-toplevel

      evaluators.run_demo_evaluation(config, workdir)
    return
  # Evaluation tasks are functions of mvlt_jax.evaluators of the same name (each writes
  # WORKDIR/results/).
  from mvlt_jax import evaluators  # pylint: disable=import-outside-toplevel

  getattr(evaluators, config.task)(config, workdir)


def _parse_flags(argv):
  """absl's flag parsing, with a mistake in ``--config`` or its overrides as one line."""
  try:
    positional = flags.FLAGS(argv)
    getattr(flags.FLAGS.config, 'task')  # a config file that failed to load raises here
    return positional
  except flags.Error as error:
    message = str(error)
  except (AttributeError, KeyError) as error:  # an override of a field the config lacks
    field = str(error).strip('\'"')
    named = [
        arg.split('=', 1)[0]
        for arg in argv
        if arg.startswith('--config.') and field in arg.split('=', 1)[0].split('.')
    ]
    message = f'{named[0] if named else "--config"}: the config has no field {field!r}.'
  except Exception as error:  # pylint: disable=broad-except  (running the config file failed)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = f'--config: {type(error).__name__}' + (f': {lines[-1]}' if lines else '')
  sys.exit(f'error: {message}')  # absl's and config_flags' messages name flags, not input


def main(argv):
  from mvlt_jax import console  # pylint: disable=import-outside-toplevel
  from mvlt_jax.errors import MVLTError, printable  # pylint: disable=import-outside-toplevel

  console.quiet_libraries(verbosity_given=flags.FLAGS['verbosity'].present)

  try:
    if len(argv) > 1:
      raise MVLTError(f'unexpected arguments {argv[1:]} (flags are --name=value).')
    run_task(flags.FLAGS.config, _WORKDIR.value)
  except MVLTError as e:
    exit_code = getattr(e, 'exit_code', None)  # train.TrainingInterrupted: not a failure
    if exit_code is not None:
      logging.info('%s', e)
      print(f'stopped: {printable(e)}', file=sys.stderr)
      sys.exit(exit_code)
    # A problem the user can fix: the message names it; no traceback.
    logging.info('%s: %s', type(e).__name__, e)  # the log's copy (--verbosity=0)
    sys.exit(f'error: {printable(e)}')


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
