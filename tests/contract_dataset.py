"""A stand-in dataset in the prepared-dataset format, for tests and benchmarks.

`write_contract_dataset` writes records whose captions and (optionally) images
tell which product and record they come from, so that tests can check what a
pipeline delivers; with photo-like JPEG images it is also the "stand-in"
dataset of the throughput measurements (docs/input_pipeline.md):

    write_contract_dataset(DIR, 'standin', split_sizes={'train': 3000},
                           image_encoding='jpeg')

(``from tests.contract_dataset import write_contract_dataset``, run from the
repository root).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline import schema
from input_pipeline import tokenizer

DEFAULT_TEXT_LENGTH = 128
DEFAULT_STORED_IMAGE_SIZE = 256
DEFAULT_VOCAB_SIZE = 30522
# Captions are made of BERT uncased WordPiece ids ([CLS] 101, [SEP] 102, [PAD] 0).
_SPECIAL_IDS = tokenizer.BERT_UNCASED_SPECIAL_IDS
_FIRST_WORD_ID = 1000


def write_contract_dataset(
    data_dir: str,
    name: str,
    *,
    split_sizes: dict[str, int],
    views_per_product: int = 2,
    num_categories: int = 4,
    subcategories_per_category: int = 3,
    image_size: int = DEFAULT_STORED_IMAGE_SIZE,
    text_length: int = DEFAULT_TEXT_LENGTH,
    image_encoding: str = 'jpeg',
    file_format: str = 'tfrecord',
    marked_images: bool = False,
    attribute_classes: tuple[int, ...] = (),
    seed: int = 0,
) -> str:
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
  num_subcategories = num_categories * subcategories_per_category
  rng = np.random.default_rng(seed)
  features = tfds.features.FeaturesDict(
      {
          schema.ID: tfds.features.Text(),
          schema.PRODUCT_ID: tfds.features.Text(),
          schema.IMAGE: tfds.features.Image(
              shape=(image_size, image_size, 3), encoding_format=image_encoding
          ),
          schema.CAPTION: tfds.features.Text(),
          schema.INPUT_IDS: tfds.features.Tensor(shape=(text_length,), dtype=np.int32),
          schema.CATEGORY: tfds.features.ClassLabel(
              names=[f'category_{c}' for c in range(num_categories)]
          ),
          schema.SUBCATEGORY: tfds.features.ClassLabel(
              names=[f'subcategory_{s}' for s in range(num_subcategories)]
          ),
          schema.POSE: tfds.features.Text(),
          **(
              {
                  schema.ATTRIBUTES: tfds.features.Tensor(
                      shape=(len(attribute_classes),), dtype=np.int32
                  )
              }
              if attribute_classes
              else {}
          ),
      }
  )

  def examples(split: str, size: int):
    for i in range(size):
      product = i // views_per_product
      subcategory = product % num_subcategories
      input_ids = np.full((text_length,), _SPECIAL_IDS.pad, np.int32)
      extra_words = rng.integers(0, max(1, text_length - 3))
      words = [_FIRST_WORD_ID + product, _FIRST_WORD_ID + i]
      words += list(rng.integers(_FIRST_WORD_ID, DEFAULT_VOCAB_SIZE, size=extra_words))
      tokens = [_SPECIAL_IDS.cls] + words[: text_length - 2] + [_SPECIAL_IDS.sep]
      input_ids[: len(tokens)] = tokens
      if marked_images:
        image = np.zeros((image_size, image_size, 3), np.uint8)
        image[..., 0], image[..., 1] = i % 256, i // 256
      else:
        image = _photo_like_image(image_size, rng)
      yield i, {
          schema.ID: f'{split}_{i}',
          schema.PRODUCT_ID: f'{split}_product_{product}',
          schema.IMAGE: image,
          schema.CAPTION: f'product {product} view {i % views_per_product}',
          schema.INPUT_IDS: input_ids,
          schema.CATEGORY: subcategory // subcategories_per_category,
          schema.SUBCATEGORY: subcategory,
          schema.POSE: f'view_{i % views_per_product}',
          **(
              {
                  schema.ATTRIBUTES: np.array(
                      [(product + k) % n for k, n in enumerate(attribute_classes)], np.int32
                  )
              }
              if attribute_classes
              else {}
          ),
      }

  class _Builder(tfds.dataset_builders.AdhocBuilder, skip_registration=True):
    # No download checksums to look up (TFDS's lookup needs
    # `importlib_resources`, which the environment does not have).
    url_infos = None

  builder = _Builder(
      name=name,
      version='1.0.0',
      features=features,
      split_datasets={split: examples(split, size) for split, size in split_sizes.items()},
      data_dir=data_dir,
      disable_shuffling=True,
  )
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
