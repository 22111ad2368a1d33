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

# Pre-training settings (configs/ hold the values a run uses).
DEFAULT_BATCH_SIZE = 256
DEFAULT_STEPS = 40
DEFAULT_WARMUP_STEPS = 5


def measure(data_dir: str, name: str, *, split: str = "train",
            batch_size: int = DEFAULT_BATCH_SIZE, steps: int = DEFAULT_STEPS,
            warmup_steps: int = DEFAULT_WARMUP_STEPS,
            image_size: int = 256, num_workers: int | None = None,
            seed: int = 0) -> dict:
  """Examples per second of the training pipeline, overall and per core."""
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top

  cores = len(os.sched_getaffinity(0))
  iterator = pipeline.train_iterator(
      data_dir, name, split, batch_size, seed=seed, image_size=image_size,
      process_index=0, process_count=1, num_workers=num_workers)
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
      "dataset": name, "split": split, "batch_size": batch_size,
      "steps": steps, "image_size": image_size,
      "text_length": int(batch["input_ids"].shape[1]),
      "cores": cores, "examples_per_s": round(examples / wall, 1),
      "examples_per_s_per_core": round(examples / wall / cores, 1),
      "examples_per_cpu_s": round(examples / cpu, 1),
      "cpu_ms_per_example": round(cpu / examples * 1e3, 3),
      "cpu_utilisation": round(cpu / wall / cores, 3),
  }


def main(argv: Sequence[str] | None = None) -> None:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--name", default="synthetic_fashion")
  parser.add_argument("--split", default="train")
  parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE)
  parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
  parser.add_argument("--warmup_steps", type=int, default=DEFAULT_WARMUP_STEPS)
  parser.add_argument("--image_size", type=int, default=256)
  parser.add_argument("--num_workers", type=int, default=None,
                      help="threads of tf.data's pool (default: the usable cores)")
  args = parser.parse_args(argv)
  from input_pipeline import errors  # pylint: disable=g-import-not-at-top
  try:
    result = measure(args.data_dir, args.name, split=args.split,
                     batch_size=args.batch_size, steps=args.steps,
                     warmup_steps=args.warmup_steps,
                     image_size=args.image_size, num_workers=args.num_workers)
  except errors.PrepareError as e:
    raise SystemExit(f"error: {e}") from None
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
