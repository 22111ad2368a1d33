"""Measures the training input pipeline's throughput on a prepared dataset.

    python -m input_pipeline.throughput --data_dir=DIR --name=synthetic_fashion \
        [--split=train] [--batch_size=256] [--steps=40] [--image_size=256]

Runs `pipeline.train_iterator` (read, decode, resize if needed, ITM pairing,
batching, prefetch) at pre-training settings and prints one JSON line:
examples/s overall and per CPU core (wall clock, divided by the cores this
process may run on), and examples per CPU-second actually used by the process
(`examples_per_cpu_s`: the per-core figure that does not depend on what else
runs on the machine; `cpu_utilisation` tells how much of the cores it got).

`--make_dataset=N` first writes a stand-in dataset of N records in the
prepared-dataset format (photo-like JPEG images, see `write_contract_dataset`)
under `--data_dir` with the name `--name`, for benchmarking before the real
builders exist.
"""

from __future__ import annotations

import json
import os
import time
from typing import Sequence

import numpy as np

# Pre-training settings (configs/ hold the values a run uses).
DEFAULT_BATCH_SIZE = 256
DEFAULT_STEPS = 40
DEFAULT_WARMUP_STEPS = 5
DEFAULT_TEXT_LENGTH = 128
DEFAULT_STORED_IMAGE_SIZE = 256
DEFAULT_VOCAB_SIZE = 30522
_CLS_ID, _SEP_ID, _PAD_ID = 101, 102, 0
_FIRST_WORD_ID = 1000


def write_contract_dataset(data_dir: str, name: str, *,
                           split_sizes: dict[str, int],
                           views_per_product: int = 2,
                           num_categories: int = 4,
                           subcategories_per_category: int = 3,
                           image_size: int = DEFAULT_STORED_IMAGE_SIZE,
                           text_length: int = DEFAULT_TEXT_LENGTH,
                           image_encoding: str = "jpeg",
                           file_format: str = "tfrecord",
                           marked_images: bool = False,
                           attribute_classes: tuple[int, ...] = (),
                           seed: int = 0) -> str:
  """Writes a stand-in dataset in the prepared-dataset format; returns its dir.

  Records are stored in generation order. Record `i` of a split belongs to
  product `i // views_per_product` (pose `i % views_per_product`); its
  sub-category is `product % (num_categories * subcategories_per_category)`,
  its category the sub-category's parent. Its caption ids are
  `[CLS] 1000 + product, 1000 + i, words... [SEP] [PAD]...` (so a caption
  tells which product and record it came from).

  With `marked_images` the image is flat and encodes the record index in its
  first two channels (pixel value `i % 256`, `i // 256`); use it with
  `image_encoding='png'` (lossless) in tests. Otherwise images are
  photo-like: a shaded garment-like blob with texture on a white background.

  With `attribute_classes` (classes per attribute), records also have the
  `attributes` feature: attribute `k` of product `p` is
  `(p + k) % attribute_classes[k]`.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  num_subcategories = num_categories * subcategories_per_category
  rng = np.random.default_rng(seed)
  features = tfds.features.FeaturesDict({
      "id": tfds.features.Text(),
      "product_id": tfds.features.Text(),
      "image": tfds.features.Image(shape=(image_size, image_size, 3),
                                   encoding_format=image_encoding),
      "caption": tfds.features.Text(),
      "input_ids": tfds.features.Tensor(shape=(text_length,), dtype=np.int32),
      "category": tfds.features.ClassLabel(
          names=[f"category_{c}" for c in range(num_categories)]),
      "subcategory": tfds.features.ClassLabel(
          names=[f"subcategory_{s}" for s in range(num_subcategories)]),
      "pose": tfds.features.Text(),
      **({"attributes": tfds.features.Tensor(shape=(len(attribute_classes),),
                                             dtype=np.int32)}
         if attribute_classes else {}),
  })

  def examples(split: str, size: int):
    for i in range(size):
      product = i // views_per_product
      subcategory = product % num_subcategories
      input_ids = np.full((text_length,), _PAD_ID, np.int32)
      extra_words = rng.integers(0, max(1, text_length - 3))
      words = [_FIRST_WORD_ID + product, _FIRST_WORD_ID + i]
      words += list(rng.integers(_FIRST_WORD_ID, DEFAULT_VOCAB_SIZE,
                                 size=extra_words))
      tokens = [_CLS_ID] + words[:text_length - 2] + [_SEP_ID]
      input_ids[:len(tokens)] = tokens
      if marked_images:
        image = np.zeros((image_size, image_size, 3), np.uint8)
        image[..., 0], image[..., 1] = i % 256, i // 256
      else:
        image = _photo_like_image(image_size, rng)
      yield i, {
          "id": f"{split}_{i}",
          "product_id": f"{split}_product_{product}",
          "image": image,
          "caption": f"product {product} view {i % views_per_product}",
          "input_ids": input_ids,
          "category": subcategory // subcategories_per_category,
          "subcategory": subcategory,
          "pose": f"view_{i % views_per_product}",
          **({"attributes": np.array([(product + k) % n
                                      for k, n in enumerate(attribute_classes)],
                                     np.int32)}
             if attribute_classes else {}),
      }

  class _Builder(tfds.dataset_builders.AdhocBuilder, skip_registration=True):
    # No download checksums to look up (TFDS's lookup needs
    # `importlib_resources`, which the environment does not have).
    url_infos = None

  builder = _Builder(
      name=name, version="1.0.0", features=features,
      split_datasets={split: examples(split, size)
                      for split, size in split_sizes.items()},
      data_dir=data_dir, disable_shuffling=True)
  builder.download_and_prepare(file_format=file_format)
  return os.fspath(builder.data_dir)


def _photo_like_image(size: int, rng: np.random.Generator) -> np.ndarray:
  """A product-photo stand-in: white background, shaded textured object."""
  y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size  # [S, S]
  centre = rng.uniform(0.35, 0.65, size=2)
  radii = rng.uniform(0.2, 0.4, size=2)
  inside = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
  colour = rng.uniform(30, 220, size=3)
  frequency = rng.uniform(10, 40)
  shade = 0.75 + 0.25 * np.sin(frequency * (x + y))[..., None]  # [S, S, 1]
  texture = rng.normal(0, 6, (size, size, 3))
  image = np.where((inside < 1)[..., None], colour * shade + texture, 255.0)
  return np.clip(image, 0, 255).astype(np.uint8)


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
  parser.add_argument("--make_dataset", type=int, default=0, metavar="N",
                      help="first write a stand-in dataset of N records")
  parser.add_argument("--image_encoding", default="jpeg",
                      choices=("jpeg", "png"),
                      help="image encoding of --make_dataset")
  args = parser.parse_args(argv)
  if args.make_dataset:
    write_contract_dataset(args.data_dir, args.name,
                           split_sizes={args.split: args.make_dataset},
                           image_encoding=args.image_encoding)
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
