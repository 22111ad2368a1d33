"""The ``fashion_gen`` dataset: Fashion-Gen from its official h5 files.

Place ``fashiongen_256_256_train.h5`` and ``fashiongen_256_256_validation.h5``
in the manual dir. Each holds ``input_image`` uint8 [N, 256, 256, 3] and
per-row fields of shape [N, 1] (byte strings in latin-1, ``input_productID``
an integer); the rows of one product are contiguous.

* ``id`` is ``<productID>_<k>``, k the row's position within its product's rows.
* ``caption`` is ``input_name`` (``caption_fields='title'``, the paper's
  setting) or ``input_name`` and ``input_description`` joined by a space
  (``'title+description'``, FashionViL's).
* the class lists are the sorted distinct ``input_category`` /
  ``input_subcategory`` values over train and validation (the paper reports 48
  and 122; the metadata records what the files hold).
* ``pose`` is ``input_pose`` (empty if the files lack it).

Storage: raw images (the default, fastest to read: ~2,800 examples/s on one
CPU thread) take 196 KB each, about 51 GB for the ~260k training images;
``--image_encoding=jpeg`` (quality ``--jpeg_quality``, 95 by default) stores
them in roughly a tenth of that, but decoding JPEG is slower (~550
examples/s per thread measured on 256x256 synthetic images).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

import h5py
import numpy as np

from input_pipeline.datasets.base import (
    SPLITS,
    DataSource,
    ImageInput,
    PrepareOptions,
    PreparedDatasetBuilder,
    SourceRecord,
    normalize_text,
)
from input_pipeline.errors import BadRecordError, FatalInputError, SkippedRecords

SPLIT_FILES = {
    'train': 'fashiongen_256_256_train.h5',
    'validation': 'fashiongen_256_256_validation.h5',
}
IMAGE_FIELD = 'input_image'
TITLE_FIELD = 'input_name'
DESCRIPTION_FIELD = 'input_description'
CATEGORY_FIELD = 'input_category'
SUBCATEGORY_FIELD = 'input_subcategory'
PRODUCT_ID_FIELD = 'input_productID'
POSE_FIELD = 'input_pose'
TEXT_ENCODING = 'latin-1'
# Rows of images read from the h5 file at once, and the most bytes such a block may take.
DEFAULT_READ_CHUNK = 256
MAX_READ_CHUNK_BYTES = 64 * 2**20


def _decode_value(value) -> str:
  """One h5 cell (bytes, str or number) as text."""
  if isinstance(value, (bytes, np.bytes_)):
    return bytes(value).decode(TEXT_ENCODING)
  if isinstance(value, (float, np.floating)) and float(value).is_integer():
    return str(int(value))
  return str(value)


class FashionGenSource(DataSource):
  """Reads the two official h5 files of Fashion-Gen.

  Args:
    manual_dir: the folder holding the h5 files.
    options: the preparation options (``caption_fields``).
    read_chunk: image rows read from the file at once (fewer where they would take more than
      ``MAX_READ_CHUNK_BYTES``).
  """

  class_list_source = 'the categories of train and validation'

  def __init__(
      self, manual_dir: str | None, options: PrepareOptions, read_chunk: int = DEFAULT_READ_CHUNK
  ):
    if not manual_dir:
      raise FatalInputError(
          'fashion_gen needs --manual_dir: the folder holding '
          f'{" and ".join(SPLIT_FILES.values())}'
      )
    self._options = options
    self._read_chunk = read_chunk
    self._paths = {split: os.path.join(manual_dir, name) for split, name in SPLIT_FILES.items()}
    missing = [path for path in self._paths.values() if not os.path.isfile(path)]
    if missing:
      raise FatalInputError(f'fashion_gen: missing file(s): {", ".join(missing)}')
    self._text_fields = [TITLE_FIELD, CATEGORY_FIELD, SUBCATEGORY_FIELD, PRODUCT_ID_FIELD]
    if options.caption_fields == 'title+description':
      self._text_fields.append(DESCRIPTION_FIELD)
    for path in self._paths.values():
      self._check_layout(path)

  def _open(self, path: str) -> h5py.File:
    try:
      return h5py.File(path, 'r')
    except OSError as e:
      raise FatalInputError(f'{path}: not a readable HDF5 file ({e})') from e

  def _check_layout(self, path: str) -> None:
    """Fatal error unless the file holds the expected datasets, all of one length."""
    with self._open(path) as f:
      required = [IMAGE_FIELD] + self._text_fields
      missing = [name for name in required if not isinstance(f.get(name), h5py.Dataset)]
      if missing:
        raise FatalInputError(
            f'{path}: missing dataset(s) {", ".join(missing)} (found: '
            f'{", ".join(sorted(f.keys())) or "none"}); is it an official Fashion-Gen file?'
        )
      images = f[IMAGE_FIELD]
      if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise FatalInputError(
            f'{path}: {IMAGE_FIELD} is {images.dtype} {images.shape}, expected uint8 [N, H, W, 3]'
        )
      height, width = images.shape[1:3]
      if height * width > self._options.max_image_pixels:
        raise FatalInputError(
            f'{path}: its images are {width}x{height} ({width * height:,} pixels), over '
            f'max_image_pixels={self._options.max_image_pixels:,}'
        )
      present = required + ([POSE_FIELD] if POSE_FIELD in f else [])
      lengths = {name: len(f[name]) for name in present}
      if len(set(lengths.values())) != 1:
        raise FatalInputError(f'{path}: datasets differ in length: {lengths}')
      if lengths[IMAGE_FIELD] == 0:
        raise FatalInputError(f'{path}: holds no rows')

  def _column(self, f: h5py.File, name: str) -> list[str]:
    values = np.asarray(f[name][()])
    values = values.reshape(len(values), -1)[:, 0]  # [N, 1] -> [N]
    return [_decode_value(v) for v in values]

  def read_records(self, skips: SkippedRecords) -> dict[str, list[SourceRecord]]:
    del skips  # Every row is a record here; the common checks do the rest.
    records = {}
    for split, path in self._paths.items():
      with self._open(path) as f:
        columns = {name: self._column(f, name) for name in self._text_fields}
        poses = self._column(f, POSE_FIELD) if POSE_FIELD in f else None
      file_name = os.path.basename(path)
      split_records = []
      previous_product, view = None, 0
      for row, product_id in enumerate(columns[PRODUCT_ID_FIELD]):
        view = view + 1 if product_id == previous_product else 0
        previous_product = product_id
        caption = columns[TITLE_FIELD][row]
        if self._options.caption_fields == 'title+description':
          caption = f'{caption} {columns[DESCRIPTION_FIELD][row]}'
        record_id = f'{product_id}_{view}'
        split_records.append(
            SourceRecord(
                id=record_id,
                product_id=product_id,
                caption=normalize_text(caption),
                category=normalize_text(columns[CATEGORY_FIELD][row]),
                subcategory=normalize_text(columns[SUBCATEGORY_FIELD][row]),
                pose=normalize_text(poses[row]) if poses else '',
                where=f'{file_name} row {row} (id {record_id!r})',
                image_ref=row,
            )
        )
      records[split] = split_records
    return records

  def class_names(
      self, records: Mapping[str, Sequence[SourceRecord]]
  ) -> tuple[list[str], list[str]]:
    every = [r for split in SPLITS for r in records[split]]
    return (sorted({r.category for r in every}), sorted({r.subcategory for r in every}))

  def images(
      self, split: str, records: Sequence[SourceRecord]
  ) -> Iterator[tuple[SourceRecord, ImageInput]]:
    with self._open(self._paths[split]) as f:
      images = f[IMAGE_FIELD]
      row_bytes = int(np.prod(images.shape[1:]))
      chunk = max(1, min(self._read_chunk, MAX_READ_CHUNK_BYTES // max(row_bytes, 1)))
      block_start, block = 0, np.zeros((0,), np.uint8)
      for record in records:  # Rows ascend: each block is read once.
        row = record.image_ref
        if not block_start <= row < block_start + len(block):
          block_start = row
          try:
            block = images[row : row + chunk]  # [chunk, H, W, 3]
          except OSError:
            block = np.zeros((0,), np.uint8)  # Read the damaged region row by row.
        if len(block):
          yield record, block[row - block_start]
          continue
        try:
          yield record, images[row]
        except OSError as e:
          yield record, BadRecordError(
              record.where, 'corrupt_image', f'cannot read the image row: {e}'
          )


class FashionGen(PreparedDatasetBuilder):
  """Fashion-Gen (Rostamzadeh et al., 2018): 256x256 product photos with titles."""

  name = 'fashion_gen'
  DESCRIPTION = __doc__
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Place {" and ".join(SPLIT_FILES.values())} (the official Fashion-Gen '
      'release) in the manual dir.'
  )
  OPTIONS_CLS = PrepareOptions

  @classmethod
  def make_source(cls, manual_dir: str | None, options: PrepareOptions) -> DataSource:
    return FashionGenSource(manual_dir, options)
