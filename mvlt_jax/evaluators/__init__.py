"""The paper's evaluation tasks, one module per evaluator (as big_vision's ``evaluators/``).

  common          what the tasks share: processes, checkpoint, evaluation split, devices,
                  split passes, results JSON and markdown tables
  retrieval       TIR / ITR on the paper's protocol and the full gallery (eval_retrieval)
  recognition     main / sub-category accuracy and macro-F1 (eval_recognition)
  reconstruction  masked image generation: PSNR / SSIM and a picture (reconstruct)
  demo            what the demo evaluates after training (run_demo_evaluation)

``main.py`` runs the task of ``config.task`` as ``getattr(evaluators, config.task)``.
Protocols, decisions and how to run each task: docs/evaluation.md.
"""

from mvlt_jax.evaluators.demo import run_demo_evaluation
from mvlt_jax.evaluators.recognition import eval_recognition
from mvlt_jax.evaluators.reconstruction import reconstruct
from mvlt_jax.evaluators.retrieval import eval_retrieval
