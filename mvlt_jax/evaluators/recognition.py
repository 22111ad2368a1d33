"""Recognition: accuracy, macro-F1 and per-class scores of the main and sub-category heads.

Task ``eval_recognition``; see docs/evaluation.md.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from mvlt_jax import metrics
from mvlt_jax.evaluators import common
from mvlt_jax.steps import images_to_float

# The paper's results (the recognition table), on common.PAPER_DATASET.
PAPER_RECOGNITION = {
    'main': {'accuracy': 0.9826, 'macro_f1': 0.896},
    'sub': {'accuracy': 0.9357, 'macro_f1': 0.829},
}


def make_recognition_step(model) -> Callable:
  """``(variables, images uint8, input_ids, record_index) -> {main, sub}`` predictions."""

  def step(variables, images, input_ids, record_index):
    del record_index
    out = model.apply(variables, images_to_float(images), input_ids, train=False)
    return {
        'main_prediction': jnp.argmax(out['main_logits'], axis=-1),
        'sub_prediction': jnp.argmax(out['sub_logits'], axis=-1),
    }

  return jax.jit(step)


def run_recognition(
    config, loaded: common.LoadedCheckpoint, data: common.EvalSplit
) -> dict[str, Any]:
  """Accuracy, macro-F1 and per-class scores of both recognition heads."""
  model_config = loaded.model_config
  for level, field in (('main', 'num_main_classes'), ('sub', 'num_sub_classes')):
    if len(data.class_names[level]) != model_config[field]:
      raise common.EvaluationError(
          f'{data.description} has {len(data.class_names[level])} {level} categories, the '
          f'checkpoint {loaded.path} predicts {model_config[field]}.'
      )
  runner = common.LocalRunner(loaded.variables)
  step = make_recognition_step(loaded.model(('recognition',), config.eval.dtype))
  start = time.perf_counter()
  rows, _ = common.run_over_split(
      config,
      data,
      runner,
      step,
      input_keys=('images', 'input_ids'),
      host_keys=('main_labels', 'sub_labels'),
      output_keys=('main_prediction', 'sub_prediction'),
      vocab_size=model_config.vocab_size,
  )
  seconds = time.perf_counter() - start
  if not rows or len(rows['record_index']) == 0:
    raise common.EvaluationError(f'{data.description} has no records to evaluate.')
  result = {'examples': int(len(rows['record_index'])), 'seconds': seconds}
  for level in ('main', 'sub'):
    names = data.class_names[level]
    report = metrics.classification_report(
        rows[f'{level}_labels'], rows[f'{level}_prediction'], len(names)
    )
    result[level] = {
        'accuracy': report.accuracy,
        'macro_f1': report.macro_f1,
        'classes': len(names),
        'classes_present': int(report.present.sum()),
        'per_class': report.per_class(names),
    }
  return result


# ----------------------------------------------------------------------------- output


def format_recognition(result: dict, with_paper: bool) -> str:
  header = ['task', 'accuracy', 'macro-F1']
  if with_paper:
    header += ['paper accuracy', 'paper macro-F1']
  rows = []
  for level, name in (('main', 'M-CR'), ('sub', 'S-CR')):
    scores = result[level]
    row = [
        f'{name} ({scores["classes"]} classes, {scores["classes_present"]} present)',
        common.percent(scores['accuracy']) + '%',
        f'{scores["macro_f1"]:.3f}',
    ]
    if with_paper:
      row += [
          common.percent(PAPER_RECOGNITION[level]['accuracy']) + '%',
          f'{PAPER_RECOGNITION[level]["macro_f1"]:.3f}',
      ]
    rows.append(row)
  return (
      f'Recognition: {result["examples"]} examples, checkpoint step '
      f'{result.get("step", "?")}\n\n' + common.markdown_table(header, rows)
  )


def format_per_class(result: dict) -> str:
  parts = []
  for level, name in (('main', 'Main categories'), ('sub', 'Sub-categories')):
    rows = [
        [
            c['name'],
            c['support'],
            c['predicted'],
            f'{c["precision"]:.3f}',
            f'{c["recall"]:.3f}',
            f'{c["f1"]:.3f}',
        ]
        for c in result[level]['per_class']
    ]
    parts.append(
        f'## {name}\n\n'
        + common.markdown_table(
            ['class', 'support', 'predicted', 'precision', 'recall', 'F1'], rows
        )
    )
  return '\n\n'.join(parts) + '\n'


# ----------------------------------------------------------------------------- task


def eval_recognition(config, workdir: str) -> dict[str, Any]:
  """Task ``eval_recognition``: ``results/recognition.json`` (+ a per-class markdown file)."""
  common.maybe_initialize_distributed(config)
  config, loaded, data = common.prepare_evaluation(config, workdir, ('recognition',))
  result = {
      **common.result_header(config, loaded, data, 'eval_recognition'),
      **run_recognition(config, loaded, data),
  }
  common.finish(
      workdir, 'recognition', result, format_recognition(result, data.name == common.PAPER_DATASET)
  )
  if jax.process_index() == 0:
    with open(os.path.join(workdir, common.RESULTS_DIR, 'recognition_per_class.md'), 'w') as f:
      f.write(format_per_class(result))
  return result
