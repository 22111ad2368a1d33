"""What the demo evaluates after training (``config.eval_after_training``).

See docs/evaluation.md.
"""

from __future__ import annotations

import sys
from typing import Any

import jax

from mvlt_jax.errors import MVLTError, printable
from mvlt_jax.evaluators import common
from mvlt_jax.evaluators import reconstruction
from mvlt_jax.evaluators import retrieval

# (result key, task name, task): what runs after training, in this order.
DEMO_TASKS = (
    ('retrieval', 'eval_retrieval', retrieval.eval_retrieval),
    ('reconstruction', 'reconstruct', reconstruction.reconstruct),
)


def run_demo_evaluation(config, workdir: str) -> dict[str, Any]:
  """What the demo runs after training: the retrieval table and the reconstruction picture.

  Uses ``config.eval`` as it is (the demo config sets fewer queries / examples); the
  checkpoint is ``config.checkpoint`` or ``workdir/checkpoints``. The training succeeded
  already, so a task that cannot run (an ``MVLTError``: data too small for the settings, a
  missing head, ...) does not fail the run: it prints one line, why and the command that runs
  it by hand, and its entry is None; the other task still runs.
  """
  results = {}
  for key, name, task in DEMO_TASKS:
    try:
      results[key] = task(config, workdir)
    except MVLTError as error:
      results[key] = None
      if jax.process_index() == 0:
        command = common.hand_command(config, workdir, name, getattr(error, 'overrides', None))
        print(
            f'evaluation after training: {name} skipped: {printable(error)} To run it by '
            f'hand: {command}',
            file=sys.stderr,
            flush=True,
        )
  return results
