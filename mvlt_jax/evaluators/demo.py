"""What the demo evaluates after training (``config.eval_after_training``).

See docs/evaluation.md.
"""

from __future__ import annotations

from typing import Any

from mvlt_jax.evaluators import reconstruction
from mvlt_jax.evaluators import retrieval


def run_demo_evaluation(config, workdir: str) -> dict[str, Any]:
  """What the demo runs after training: the retrieval table and the reconstruction picture.

  Uses ``config.eval`` as it is (the demo config sets fewer queries / examples); the
  checkpoint is ``config.checkpoint`` or ``workdir/checkpoints``.
  """
  return {
      'retrieval': retrieval.eval_retrieval(config, workdir),
      'reconstruction': reconstruction.reconstruct(config, workdir),
  }
