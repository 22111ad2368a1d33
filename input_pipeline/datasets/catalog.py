"""The ``catalog`` dataset: a user's own product catalog (JSONL or CSV + images).

Layout of the manual dir, either

* ``train.jsonl`` (or ``train.csv``) and ``validation.jsonl`` (or
  ``validation.csv``): one file per split; or
* a single ``catalog.jsonl`` (or ``catalog.csv``): split by product (all views
  of a product together), see *The split of a single-file catalog* below.

Each record has the fields ``id``, ``product_id``, ``image`` (a path relative to
the file holding the record, or absolute), ``caption``, ``category`` and
``subcategory``; ``pose`` is optional. A JSONL file holds one JSON object per
line; a CSV file has a header row naming the columns. Files are UTF-8.

Class lists: by default the sorted distinct categories / sub-categories of the
training split; a validation record whose category was never seen in training
is skipped (``unknown_category``), since no example could have taught it (with
two files the user chose the split, so this can happen; a single-file catalog
is split so that it cannot, see below). With ``class_file`` (a JSON file
``{"categories": [...], "subcategories": [...]}``, relative to the manual dir)
the lists are the file's, in its order, and any record outside them is skipped.

The split of a single-file catalog keeps every class of validation in training
(:func:`split_products`; deterministic: the same catalog gives the same split
whatever the order of its lines):

1. a product is a validation *candidate* when the SHA-256 of its
   ``product_id`` (first 8 bytes, as a fraction of 2**64) falls below
   ``validation_fraction``; the other products go to training;
2. the candidates are taken by descending hash (ties by product id); a
   candidate goes to training instead when one of its classes (its category or
   its sub-category; all of them if its views disagree) has no training
   product yet, and to validation otherwise.

So every category and sub-category has a training product, the products of a
class too small to split (e.g. a sub-category of one product) go to training,
and a catalog whose hash split already had every validation class in training
keeps exactly that split (a non-candidate is never moved; candidates only move
to training). The split is made after the text checks (and, with
``class_file``, after the records outside the class lists are dropped), so
that the classes it protects are those of the records that are kept. An image
found unreadable only while building does not change the split. A catalog of
which no product can go to validation is a fatal error.

Bad records are skipped (or, in strict mode, stop the preparation) with their
file and line; those of a single-file catalog are counted under ``catalog``
(they are dropped before the file is split), the others under their split.

Images of any mode are accepted (see :mod:`input_pipeline.image_ops`), in the formats of
``image_ops.ACCEPTED_FORMATS`` (another format: ``unsupported_format``), up to
``max_image_bytes`` per file (checked with ``fstat`` before the file is read) and
``max_image_pixels`` per image (checked from its header before it is decoded); a larger one
is skipped (``image_too_large``), its message naming the file and the limit.

Hostile records are skipped like any bad one: a value holding a lone surrogate (``"\\ud800"``
is valid JSON, but not Unicode that can be written out) or a JSON line nested too deeply
to parse are ``invalid_record``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence

from input_pipeline.datasets.base import (
    SPLITS,
    TRAIN_SPLIT,
    DataSource,
    ImageInput,
    PrepareOptions,
    PreparedDatasetBuilder,
    SourceRecord,
    drop_bad_text_records,
    drop_unknown_categories,
    normalize_text,
)
from input_pipeline.errors import BadRecordError, FatalInputError, SkippedRecords

REQUIRED_FIELDS = ('id', 'product_id', 'image', 'caption', 'category', 'subcategory')
OPTIONAL_FIELDS = ('pose',)
FORMATS = ('jsonl', 'csv')
SINGLE_FILE_STEM = 'catalog'
VALIDATION_SPLIT = 'validation'
CLASS_FILE_KEYS = ('categories', 'subcategories')
_UTF8_BOM = b'\xef\xbb\xbf'


@dataclasses.dataclass(frozen=True)
class CatalogOptions(PrepareOptions):
  """Options of ``catalog``.

  Attributes:
    validation_fraction: share of products sent to validation when the
      catalog is a single file.
    class_file: JSON file with the class lists (relative to the manual dir).
  """

  caption_fields: str = 'caption'
  validation_fraction: float = 0.1
  class_file: str | None = None

  CAPTION_FIELDS = ('caption',)

  def __post_init__(self):
    super().__post_init__()
    object.__setattr__(self, 'class_file', self.class_file or None)
    if not 0.0 < self.validation_fraction < 1.0:
      raise FatalInputError(
          f'invalid option: validation_fraction={self.validation_fraction}, expected in (0, 1)'
      )


def _find_file(manual_dir: str, stem: str) -> str | None:
  found = [
      os.path.join(manual_dir, f'{stem}.{fmt}')
      for fmt in FORMATS
      if os.path.isfile(os.path.join(manual_dir, f'{stem}.{fmt}'))
  ]
  if len(found) > 1:
    raise FatalInputError(f'{manual_dir}: both {" and ".join(found)} exist; keep one')
  return found[0] if found else None


def _product_hash(product_id: str) -> int:
  """The first 8 bytes of the SHA-256 of ``product_id``, as an integer in [0, 2**64)."""
  return int.from_bytes(hashlib.sha256(product_id.encode('utf-8')).digest()[:8], 'big')


def _is_validation_product(product_id: str, validation_fraction: float) -> bool:
  """Whether ``product_id`` is a validation candidate (its hash below the fraction)."""
  return _product_hash(product_id) / 2.0**64 < validation_fraction


def split_products(
    records: Iterable[SourceRecord], validation_fraction: float
) -> dict[str, list[SourceRecord]]:
  """The records of a single-file catalog split by product (see the module docstring).

  Every category and sub-category of the validation split keeps a product in
  training. Records keep their order within each split.
  """
  records = list(records)
  classes: dict[str, set[tuple[str, str]]] = {}  # product -> its (level, name) classes
  for record in records:
    classes.setdefault(record.product_id, set()).update(
        (('category', record.category), ('subcategory', record.subcategory))
    )
  candidates = {p for p in classes if _is_validation_product(p, validation_fraction)}
  in_training = {
      cls
      for product, product_classes in classes.items()
      if product not in candidates
      for cls in product_classes
  }
  validation = set()
  for product in sorted(candidates, key=lambda p: (-_product_hash(p), p)):
    if classes[product] <= in_training:
      validation.add(product)
    else:  # It would leave a class without any training product.
      in_training |= classes[product]
  split = {TRAIN_SPLIT: [], VALIDATION_SPLIT: []}
  for record in records:
    split[VALIDATION_SPLIT if record.product_id in validation else TRAIN_SPLIT].append(record)
  return split


def _has_undecodable_bytes(text: str) -> bool:
  """Whether ``text`` holds bytes that were not UTF-8 (decoded as surrogates)."""
  return any('\udc80' <= char <= '\udcff' for char in text)


def _first_surrogate(text: str) -> str | None:
  """The first surrogate code point of ``text`` (not Unicode that can be encoded), or None."""
  return next((char for char in text if '\ud800' <= char <= '\udfff'), None)


class CatalogSource(DataSource):
  """Reads a catalog (see the module docstring)."""

  def __init__(self, manual_dir: str | None, options: CatalogOptions):
    if not manual_dir or not os.path.isdir(manual_dir):
      raise FatalInputError(
          f'catalog needs --manual_dir, the folder holding the catalog file(s); got {manual_dir!r}'
      )
    self._options = options
    self._manual_dir = manual_dir
    split_files = {split: _find_file(manual_dir, split) for split in SPLITS}
    single_file = _find_file(manual_dir, SINGLE_FILE_STEM)
    if all(split_files.values()):
      self._files = split_files
      self._single_file = None
    elif single_file and not any(split_files.values()):
      self._files = {}
      self._single_file = single_file
    else:
      raise FatalInputError(
          f'{manual_dir}: expected train.jsonl|csv and validation.jsonl|csv, or a single '
          f'{SINGLE_FILE_STEM}.jsonl|csv; found: '
          f'{", ".join(sorted(os.listdir(manual_dir))) or "nothing"}'
      )
    self._class_lists = self._read_class_file() if options.class_file else None

  def _read_class_file(self) -> tuple[list[str], list[str]]:
    path = os.path.join(self._manual_dir, self._options.class_file)
    try:
      with open(path, 'rb') as f:
        content = json.loads(f.read().decode('utf-8'))
    except FileNotFoundError as e:
      raise FatalInputError(f'{path}: class file not found') from e
    except (OSError, ValueError) as e:
      raise FatalInputError(f'{path}: cannot read the class file ({e})') from e
    lists = []
    for key in CLASS_FILE_KEYS:
      names = content.get(key) if isinstance(content, dict) else None
      if (
          not isinstance(names, list)
          or not names
          or not all(isinstance(n, str) and n.strip() for n in names)
      ):
        raise FatalInputError(f'{path}: {key!r} must be a non-empty list of names')
      names = [normalize_text(n) for n in names]
      if len(set(names)) != len(names):
        raise FatalInputError(f'{path}: {key!r} lists a name twice')
      lists.append(names)
    return lists[0], lists[1]

  # -- text pass --------------------------------------------------------------

  def read_records(self, skips: SkippedRecords) -> dict[str, list[SourceRecord]]:
    if self._files:
      return {
          split: list(self._read_file(path, skips, split)) for split, path in self._files.items()
      }
    # The text checks (and the class file) first, so that the split protects
    # the classes of the records that are kept.
    records = {SINGLE_FILE_STEM: list(self._read_file(self._single_file, skips, SINGLE_FILE_STEM))}
    records = drop_bad_text_records(records, skips)
    if self._class_lists is not None:
      records = drop_unknown_categories(records, *self._class_lists, skips, self.class_list_source)
    fraction = self._options.validation_fraction
    split = split_products(records[SINGLE_FILE_STEM], fraction)
    if split[TRAIN_SPLIT] and not split[VALIDATION_SPLIT]:
      candidates = {
          r.product_id for r in split[TRAIN_SPLIT] if _is_validation_product(r.product_id, fraction)
      }
      why = (
          f'the {len(candidates)} candidate product(s) are each needed in training by a '
          f'class that has no other product'
          if candidates
          else f'no product id hashes below validation_fraction={fraction}'
      )
      raise FatalInputError(
          f'{self._single_file}: no product can go to validation ({why}); '
          f'pass a larger --validation_fraction or add products'
      )
    return {name: split[name] for name in SPLITS}

  def _read_file(self, path: str, skips: SkippedRecords, skip_key: str) -> Iterator[SourceRecord]:
    """The records of one file; bad ones go to ``skips`` under ``skip_key``.

    ``skip_key`` is the file's split, or ``'catalog'`` for a single-file
    catalog (its bad records are skipped before it is split).
    """
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise FatalInputError(f'{path}: cannot read ({e.strerror})') from e
    if data.startswith(_UTF8_BOM):
      data = data[len(_UTF8_BOM) :]
    rows = self._jsonl_rows(path, data) if path.endswith('.jsonl') else self._csv_rows(path, data)
    count = 0
    for where, fields in rows:
      count += 1
      try:
        yield self._to_record(path, where, fields)
      except BadRecordError as e:
        skips.add(skip_key, e)
    if count == 0:
      raise FatalInputError(f'{path}: the catalog is empty (no records)')

  def _jsonl_rows(self, path: str, data: bytes) -> Iterator[tuple[str, dict | BadRecordError]]:
    name = os.path.basename(path)
    for line_number, line in enumerate(data.split(b'\n'), start=1):
      where = f'{name} line {line_number}'
      if not line.strip():
        continue
      try:
        text = line.decode('utf-8')
      except UnicodeDecodeError as e:
        yield where, BadRecordError(
            where, 'not_utf8', f'the line is not valid UTF-8 ({e.reason} ' f'at byte {e.start})'
        )
        continue
      try:
        fields = json.loads(text)
      except ValueError as e:
        yield where, BadRecordError(where, 'invalid_record', f'not valid JSON ({e})')
        continue
      except RecursionError:
        yield where, BadRecordError(
            where, 'invalid_record', 'the JSON is nested too deeply to be read'
        )
        continue
      if not isinstance(fields, dict):
        yield where, BadRecordError(where, 'invalid_record', 'the line is not a JSON object')
        continue
      yield where, fields

  def _csv_rows(self, path: str, data: bytes) -> Iterator[tuple[str, dict | BadRecordError]]:
    name = os.path.basename(path)
    text = data.decode('utf-8', errors='surrogateescape')
    reader = csv.DictReader(io.StringIO(text, newline=''))
    try:
      header = reader.fieldnames or []
      missing = [f for f in REQUIRED_FIELDS if f not in header]
      if missing and header:
        raise FatalInputError(
            f'{path}: the header lacks column(s) {", ".join(missing)} '
            f'(found: {", ".join(header)})'
        )
      for row in reader:
        where = f'{name} line {reader.line_num}'
        if None in row:  # More values than columns.
          yield where, BadRecordError(
              where,
              'invalid_record',
              f'{len(header) + len(row[None])} values for ' f'{len(header)} columns',
          )
        elif any(_has_undecodable_bytes(v) for v in row.values() if v):
          yield where, BadRecordError(where, 'not_utf8', 'the row is not valid UTF-8')
        else:
          yield where, {k: v for k, v in row.items() if v is not None}
    except csv.Error as e:
      raise FatalInputError(f'{path} line {reader.line_num}: malformed CSV ({e})') from e

  def _to_record(self, path: str, where: str, fields: dict | BadRecordError) -> SourceRecord:
    if isinstance(fields, BadRecordError):
      raise fields
    record_id = fields.get('id')
    if record_id is not None:
      where = f'{where} (id {str(record_id)!r})'
    values = {}
    for name in REQUIRED_FIELDS + OPTIONAL_FIELDS:
      value = fields.get(name)
      if value is None:
        if name in REQUIRED_FIELDS:
          raise BadRecordError(where, 'missing_field', f'the field {name!r} is missing')
        value = ''
      if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRecordError(
            where,
            'invalid_record',
            f'the field {name!r} must be a string, not {type(value).__name__}',
        )
      values[name] = str(value).strip()
      surrogate = _first_surrogate(values[name])
      if surrogate is not None:
        raise BadRecordError(
            where,
            'invalid_record',
            f'the field {name!r} is not valid Unicode (a lone surrogate '
            f'\\u{ord(surrogate):04x})',
        )
    if not values['image']:
      raise BadRecordError(where, 'missing_field', "the field 'image' is empty")
    image_path = os.path.join(os.path.dirname(path), values['image'])
    if not os.path.isfile(image_path):
      raise BadRecordError(where, 'missing_image', f'image file not found: {image_path}')
    return SourceRecord(
        id=values['id'],
        product_id=values['product_id'],
        caption=normalize_text(values['caption']),
        category=normalize_text(values['category']),
        subcategory=normalize_text(values['subcategory']),
        pose=values['pose'],
        where=where,
        image_ref=image_path,
    )

  # -- classes and images -----------------------------------------------------

  def class_names(
      self, records: Mapping[str, Sequence[SourceRecord]]
  ) -> tuple[list[str], list[str]]:
    if self._class_lists is not None:
      return self._class_lists
    train = records[TRAIN_SPLIT]
    return sorted({r.category for r in train}), sorted({r.subcategory for r in train})

  @property
  def class_list_source(self) -> str:
    """Where the class lists come from, for messages."""
    if self._class_lists is not None:
      return os.path.join(self._manual_dir, self._options.class_file)
    return 'the categories of the train split'

  def image_file(self, record: SourceRecord) -> str:
    return record.image_ref

  def images(
      self, split: str, records: Sequence[SourceRecord]
  ) -> Iterator[tuple[SourceRecord, ImageInput]]:
    for record in records:
      yield record, self._read_image(record)

  def _read_image(self, record: SourceRecord) -> ImageInput:
    """The bytes of ``record``'s image file, or why not: a file over ``max_image_bytes`` is
    not read (its size is checked on the open file, and the read stops past the limit)."""
    path, limit = record.image_ref, self._options.max_image_bytes

    def too_large(size: str) -> BadRecordError:
      return BadRecordError(
          record.where,
          'image_too_large',
          f'{path}: the file is {size} bytes, over max_image_bytes={limit:,}',
      )

    try:
      with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
          return too_large(f'{size:,}')
        data = f.read(limit + 1)
    except OSError as e:
      return BadRecordError(record.where, 'missing_image', f'cannot read {path}: {e.strerror}')
    if len(data) > limit:  # It grew since fstat.
      return too_large(f'more than {limit:,}')
    return data


class Catalog(PreparedDatasetBuilder):
  """A user's product catalog: images with captions and two levels of categories."""

  name = 'catalog'
  DESCRIPTION = __doc__
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Place the catalog file(s) and images in the manual dir.'
  OPTIONS_CLS = CatalogOptions

  @classmethod
  def make_source(cls, manual_dir: str | None, options: CatalogOptions) -> DataSource:
    return CatalogSource(manual_dir, options)
