"""Measures the training input pipeline's throughput on a prepared dataset.

    python -m input_pipeline.throughput --data_dir=DIR --name=synthetic_fashion \
        [--split=train] [--batch_size=256] [--steps=40] [--image_size=256]

Runs `pipeline.train_iterator` (read, decode, resize if needed, ITM pairing,
batching, prefetch) at pre-training settings and prints one JSON line:
examples/s overall and per CPU core (wall clock, divided by the cores this
process may run on), and examples per CPU-second actually used by the process
(`examples_per_cpu_s`: the per-core figure that does not depend on what else
runs on the machine; `cpu_utilisation` tells how much of the cores it got).

The stand-in dataset of docs/input_pipeline.md (photo-like JPEG images in the
prepared-dataset format) is written by `tests/contract_dataset.py`'s
`write_contract_dataset`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Sequence

from absl import app
from absl import flags

# Pre-training settings (configs/ hold the values a run uses).
DEFAULT_BATCH_SIZE = 256
DEFAULT_STEPS = 40
DEFAULT_WARMUP_STEPS = 5


def measure(
    data_dir: str,
    name: str,
    *,
    split: str = 'train',
    batch_size: int = DEFAULT_BATCH_SIZE,
    steps: int = DEFAULT_STEPS,
    warmup_steps: int = DEFAULT_WARMUP_STEPS,
    image_size: int = 256,
    num_workers: int | None = None,
    seed: int = 0,
) -> dict:
  """Examples per second of the training pipeline, overall and per core."""
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top

  cores = len(os.sched_getaffinity(0))
  iterator = pipeline.train_iterator(
      data_dir,
      name,
      split,
      batch_size,
      seed=seed,
      image_size=image_size,
      process_index=0,
      process_count=1,
      num_workers=num_workers,
  )
  cpu_start = None
  for step in range(warmup_steps + steps):
    if step == warmup_steps:
      wall_start, cpu_start = time.perf_counter(), time.process_time()
    batch = next(iterator)
  wall = time.perf_counter() - wall_start
  cpu = time.process_time() - cpu_start
  iterator.close()
  examples = steps * batch_size
  return {
      'dataset': name,
      'split': split,
      'batch_size': batch_size,
      'steps': steps,
      'image_size': image_size,
      'text_length': int(batch['input_ids'].shape[1]),
      'cores': cores,
      'examples_per_s': round(examples / wall, 1),
      'examples_per_s_per_core': round(examples / wall / cores, 1),
      'examples_per_cpu_s': round(examples / cpu, 1),
      'cpu_ms_per_example': round(cpu / examples * 1e3, 3),
      'cpu_utilisation': round(cpu / wall / cores, 3),
  }


_DATA_DIR = flags.DEFINE_string('data_dir', None, 'where the prepared dataset is', required=True)
_NAME = flags.DEFINE_string('name', 'synthetic_fashion', 'the prepared dataset')
_SPLIT = flags.DEFINE_string('split', 'train', 'its split')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', DEFAULT_BATCH_SIZE, 'examples per step')
_STEPS = flags.DEFINE_integer('steps', DEFAULT_STEPS, 'measured steps')
_WARMUP_STEPS = flags.DEFINE_integer(
    'warmup_steps', DEFAULT_WARMUP_STEPS, 'steps before the measurement'
)
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 256, 'side of the delivered images')
_NUM_WORKERS = flags.DEFINE_integer(
    'num_workers', None, "threads of tf.data's pool (default: the usable cores)"
)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from input_pipeline import errors  # pylint: disable=g-import-not-at-top

  try:
    result = measure(
        _DATA_DIR.value,
        _NAME.value,
        split=_SPLIT.value,
        batch_size=_BATCH_SIZE.value,
        steps=_STEPS.value,
        warmup_steps=_WARMUP_STEPS.value,
        image_size=_IMAGE_SIZE.value,
        num_workers=_NUM_WORKERS.value,
    )
  except errors.PrepareError as e:
    raise SystemExit(f'error: {e}') from None
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  app.run(main)
