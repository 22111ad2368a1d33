"""What the three dataset builders share: options, records, feature schema, generation.

A prepared dataset is built in two passes over its source:

1. the text pass (:meth:`DataSource.read_records`) reads every record without
   its image, drops the bad ones (missing fields, empty captions, duplicate
   ids, unknown categories, ...) and yields the class lists and the training
   captions, on which the tokenizer is trained;
2. the TFDS build (:class:`PreparedDatasetBuilder`) then fetches each kept
   record's image, decodes and preprocesses it (a record whose image cannot be
   decoded is skipped) and writes the example with its caption tokenised.

The features of every prepared dataset (the contract with
``input_pipeline.pipeline``) are named and described in
:mod:`input_pipeline.schema`.

The dataset metadata (``info.metadata``, written with the dataset) records
the class lists (and the attribute class lists), the tokenizer (kind, vocab
size, special ids, fingerprint),
``text_length``, ``caption_fields``, the options, the examples per split and
category, the split counts (:func:`split_counts`: records, products, categories
and sub-categories per split, and the classes found only in training) and the
skipped records per split and reason.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import inspect
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Union

from etils import epath
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils

from input_pipeline import image_ops, schema
from input_pipeline.errors import (
    BadRecordError,
    FatalInputError,
    ImageDecodeError,
    NotPreparedError,
    SkippedRecords,
)
from input_pipeline.image_workers import ImageWorkers
from input_pipeline.tokenizer import (
    CHECKPOINT_CONFIG_FILE,
    CHECKPOINT_TOKENIZER_DIR,
    SPECIAL_TOKENS,
    Tokenizer,
    checkpoint_folder,
    checkpoint_tokenizer,
)

SPLITS = ('train', 'validation')
TRAIN_SPLIT = 'train'
TOKENIZER_KINDS = ('sentencepiece', 'wordpiece')
IMAGE_ENCODINGS = ('raw', 'jpeg')
METADATA_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------
# Options


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
  """Options of a preparation, shared by every dataset.

  Attributes:
    tokenizer: ``sentencepiece`` (trained on the training captions) or
      ``wordpiece`` (BERT uncased, needs ``vocab_file``).
    vocab_file: a BERT ``vocab.txt`` (``wordpiece`` only).
    vocab_size: SentencePiece vocabulary size (a soft limit).
    text_length: length L of ``input_ids`` (the model's text length).
    caption_fields: which source fields make the caption (see
      ``CAPTION_FIELDS`` of each dataset).
    image_size: height and width S of the stored images.
    image_encoding: ``raw`` (uint8 bytes, fastest to read) or ``jpeg``.
    jpeg_quality: JPEG quality for ``image_encoding='jpeg'``.
    crop_white_margin: crop each image to its non-white content first.
    max_image_bytes: an image file larger than this is not read (its record is skipped,
      ``image_too_large``).
    max_image_pixels: an image of more pixels than this is not decoded (its record is
      skipped, ``image_too_large``; checked from the image's header). Fashion-Gen's h5
      images are held to it as a whole (a fatal error).
    tokenizer_from: a checkpoint folder (or one of its steps): the captions are tokenized
      with the tokenizer saved beside it (``CKPT/tokenizer``), not with one built here, so
      that the checkpoint's word table fits the dataset (its ``init_from``). Resolved by
      :meth:`from_overrides`: ``tokenizer`` and ``vocab_size`` become the checkpoint
      tokenizer's kind and size (``vocab_file`` and another ``vocab_size`` or ``tokenizer``
      are an error), and ``text_length``, unless given, the checkpoint's
      (``model.text_length`` of ``CKPT/config.json``).
  """

  tokenizer: str = 'sentencepiece'
  vocab_file: str | None = None
  vocab_size: int = 8000
  text_length: int = 128
  caption_fields: str = 'title'
  image_size: int = 256
  image_encoding: str = 'raw'
  jpeg_quality: int = 95
  crop_white_margin: bool = True
  max_image_bytes: int = image_ops.DEFAULT_MAX_IMAGE_BYTES
  max_image_pixels: int = image_ops.DEFAULT_MAX_IMAGE_PIXELS
  tokenizer_from: str | None = None

  CAPTION_FIELDS: ClassVar[tuple[str, ...]] = ('title', 'title+description')

  def __post_init__(self):
    def check(ok: bool, message: str):
      if not ok:
        raise FatalInputError(f'invalid option: {message}')

    # An empty path (as configs write "none") is no path.
    object.__setattr__(self, 'vocab_file', self.vocab_file or None)
    object.__setattr__(self, 'tokenizer_from', self.tokenizer_from or None)
    check(
        self.tokenizer in TOKENIZER_KINDS,
        f'tokenizer={self.tokenizer!r}, expected one of {TOKENIZER_KINDS}',
    )
    if self.tokenizer_from:
      check(
          not self.vocab_file,
          'tokenizer_from and vocab_file both name a tokenizer; give one of them',
      )
      object.__setattr__(self, 'tokenizer_from', os.path.abspath(self.tokenizer_from))
    elif self.tokenizer == 'wordpiece':
      check(bool(self.vocab_file), 'tokenizer=wordpiece needs vocab_file (a BERT vocab.txt)')
    else:
      check(not self.vocab_file, 'vocab_file is only used with tokenizer=wordpiece')
    check(self.vocab_size > len(SPECIAL_TOKENS), f'vocab_size={self.vocab_size} is too small')
    check(self.text_length >= 2, f'text_length={self.text_length} leaves no room for [CLS] [SEP]')
    check(
        self.caption_fields in self.CAPTION_FIELDS,
        f'caption_fields={self.caption_fields!r}, expected one of {self.CAPTION_FIELDS}',
    )
    check(self.image_size >= 1, f'image_size={self.image_size}')
    check(
        self.image_encoding in IMAGE_ENCODINGS,
        f'image_encoding={self.image_encoding!r}, expected one of {IMAGE_ENCODINGS}',
    )
    check(1 <= self.jpeg_quality <= 100, f'jpeg_quality={self.jpeg_quality}')
    check(self.max_image_bytes >= 1, f'max_image_bytes={self.max_image_bytes}, expected >= 1')
    check(self.max_image_pixels >= 1, f'max_image_pixels={self.max_image_pixels}, expected >= 1')
    if self.vocab_file:
      # Recorded as an absolute path, so that re-runs compare equal.
      object.__setattr__(self, 'vocab_file', os.path.abspath(self.vocab_file))

  @classmethod
  def from_overrides(cls, dataset: str, overrides: Mapping[str, Any]) -> 'PrepareOptions':
    """The defaults of ``cls`` with ``overrides`` (``None`` values are ignored)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - names)
    if unknown:
      raise FatalInputError(
          f'invalid option for {dataset}: {", ".join(unknown)} '
          f'(valid: {", ".join(sorted(names))})'
      )
    if given.get('tokenizer_from'):
      given = _with_checkpoint_tokenizer(given)
    return cls(**given)

  def as_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def storage_spec(self) -> image_ops.StorageSpec:
    """How these options store images."""
    return image_ops.StorageSpec(
        size=self.image_size,
        crop_margin=self.crop_white_margin,
        encoding=self.image_encoding,
        jpeg_quality=self.jpeg_quality,
        max_pixels=self.max_image_pixels,
    )


def _checkpoint_model(folder: str) -> dict[str, Any]:
  """``model`` of the checkpoint's ``config.json`` ({} when it has none)."""
  path = os.path.join(folder, CHECKPOINT_CONFIG_FILE)
  if not os.path.isfile(path):
    return {}
  try:
    with open(path, 'rb') as f:
      config = json.loads(f.read().decode('utf-8'))
  except (OSError, ValueError) as e:
    raise FatalInputError(f'invalid option: tokenizer_from: cannot read {path} ({e})') from e
  model = config.get('model') if isinstance(config, dict) else None
  return model if isinstance(model, dict) else {}


def _with_checkpoint_tokenizer(given: dict[str, Any]) -> dict[str, Any]:
  """``given`` with ``tokenizer_from`` resolved (see ``PrepareOptions.tokenizer_from``)."""
  path = os.fspath(given['tokenizer_from'])
  folder = checkpoint_folder(path)
  where = f'tokenizer_from={path}'
  if not os.path.isdir(folder):
    raise FatalInputError(f'invalid option: {where}: no such checkpoint folder')
  model = _checkpoint_model(folder)
  tokenizer = checkpoint_tokenizer(folder)
  if tokenizer is None:
    inner = os.path.join(folder, 'checkpoints')
    if os.path.isdir(os.path.join(inner, CHECKPOINT_TOKENIZER_DIR)):
      raise FatalInputError(
          f'invalid option: {where}: no tokenizer there; the checkpoints of that training '
          f'run are in {inner}: pass --tokenizer_from={inner}'
      )
    sizes = ', '.join(
        f'{key}={model[key]}' for key in ('vocab_size', 'text_length') if key in model
    )
    raise FatalInputError(
        f'invalid option: {where}: the checkpoint keeps no tokenizer (no '
        f"{os.path.join(folder, CHECKPOINT_TOKENIZER_DIR)}, as one converted from the release's "
        f'PyTorch files{"; its model has " + sizes if sizes else ""}): prepare without '
        '--tokenizer_from, with the vocabulary the checkpoint was trained with, e.g. for the '
        "release's: --tokenizer=wordpiece --vocab_file=/path/to/bert-base-uncased/vocab.txt "
        f'--text_length={model.get("text_length", 128)}'
    )
  if given.get('vocab_file'):
    raise FatalInputError(
        f'invalid option: {where} and vocab_file={given["vocab_file"]} both name a tokenizer; '
        'give one of them'
    )
  for key, value in (('tokenizer', tokenizer.KIND), ('vocab_size', tokenizer.vocab_size)):
    if key in given and given[key] != value:
      raise FatalInputError(
          f'invalid option: {key}={given[key]!r}, but the tokenizer of {where} is '
          f'{tokenizer.KIND} with {tokenizer.vocab_size} ids: leave {key} out'
      )
  resolved = dict(given, tokenizer_from=folder, tokenizer=tokenizer.KIND)
  resolved['vocab_size'] = tokenizer.vocab_size
  if 'text_length' not in given:
    if not isinstance(model.get('text_length'), int):
      raise FatalInputError(
          f'invalid option: {where}: {folder} has no {CHECKPOINT_CONFIG_FILE} with '
          'model.text_length to take the text length from: give text_length'
      )
    resolved['text_length'] = model['text_length']
  return resolved


# ---------------------------------------------------------------------------
# Records


@dataclasses.dataclass(frozen=True, slots=True)
class SourceRecord:
  """One image-text pair of a source, before its image is read.

  Attributes:
    id, product_id, caption, category, subcategory, pose: the example's fields.
    where: the file and record it comes from, for messages.
    image_ref: what the source needs to fetch the image (a path, a row, ...).
    attributes: the product's attribute values (e.g. colour, pattern), one per entry of
      the source's ``attribute_classes()`` in that order; () for sources without them.
  """

  id: str
  product_id: str
  caption: str
  category: str
  subcategory: str
  pose: str
  where: str
  image_ref: Any = None
  attributes: tuple[str, ...] = ()


# An image as a source hands it over (encoded bytes, pixels, a function that
# draws it), or the reason it cannot be had.
ImageInput = Union[image_ops.SourceImage, BadRecordError]


def normalize_text(text: str) -> str:
  """Whitespace collapsed to single spaces, ends stripped."""
  return ' '.join(text.split())


class DataSource(abc.ABC):
  """Where the records of a dataset come from."""

  # Where the class lists come from, for messages about unknown categories.
  class_list_source: str = 'the class lists'

  @abc.abstractmethod
  def read_records(self, skips: SkippedRecords) -> dict[str, list[SourceRecord]]:
    """The records of each split, without images, bad ones skipped into ``skips``.

    Sources check what only they can (unreadable lines, absent fields, ...);
    :func:`drop_bad_text_records` does the checks common to all of them.
    """

  @abc.abstractmethod
  def class_names(
      self, records: Mapping[str, Sequence[SourceRecord]]
  ) -> tuple[list[str], list[str]]:
    """The main and sub category lists (the ClassLabel names)."""

  def attribute_classes(self) -> dict[str, list[str]]:
    """Attribute name -> its values (the class lists of ``SourceRecord.attributes``).

    Empty for sources without attribute labels (Fashion-Gen, catalogs); the synthetic
    catalog has colour and pattern. Stored as the ``attributes`` feature (int32 [K]).
    """
    return {}

  def image_file(self, record: SourceRecord) -> str | None:
    """The file ``record``'s image comes from, named in messages about it (None: none)."""
    del record
    return None

  @abc.abstractmethod
  def images(
      self, split: str, records: Sequence[SourceRecord]
  ) -> Iterator[tuple[SourceRecord, ImageInput]]:
    """Each record of ``split`` (in the given order) with its image."""


def drop_bad_text_records(
    records: Mapping[str, Sequence[SourceRecord]], skips: SkippedRecords
) -> dict[str, list[SourceRecord]]:
  """Skips records with an empty field or caption, or an id seen before.

  Splits are checked in the order of ``records``; the first occurrence of an
  id is kept.
  """
  seen_ids: dict[str, str] = {}
  kept = {}
  for split, split_records in records.items():
    kept[split] = []
    for record in split_records:
      empty = [
          name
          for name in ('id', 'product_id', 'category', 'subcategory')
          if not getattr(record, name).strip()
      ]
      if empty:
        skips.add(
            split,
            BadRecordError(record.where, 'missing_field', f'empty field(s): {", ".join(empty)}'),
        )
      elif not record.caption.strip():
        skips.add(
            split,
            BadRecordError(
                record.where, 'empty_caption', 'the caption is empty or only whitespace'
            ),
        )
      elif record.id in seen_ids:
        skips.add(
            split,
            BadRecordError(
                record.where,
                'duplicate_id',
                f'id {record.id!r} was already used by {seen_ids[record.id]}',
            ),
        )
      else:
        seen_ids[record.id] = record.where
        kept[split].append(record)
  return kept


def drop_unknown_categories(
    records: Mapping[str, Sequence[SourceRecord]],
    main_categories: Sequence[str],
    sub_categories: Sequence[str],
    skips: SkippedRecords,
    list_source: str,
) -> dict[str, list[SourceRecord]]:
  """Skips records whose category or sub-category is outside the class lists."""
  main, sub = set(main_categories), set(sub_categories)
  kept = {}
  for split, split_records in records.items():
    kept[split] = []
    for record in split_records:
      if record.category not in main:
        skips.add(
            split,
            BadRecordError(
                record.where,
                'unknown_category',
                f'category {record.category!r} is not in {list_source}',
            ),
        )
      elif record.subcategory not in sub:
        skips.add(
            split,
            BadRecordError(
                record.where,
                'unknown_category',
                f'subcategory {record.subcategory!r} is not in {list_source}',
            ),
        )
      else:
        kept[split].append(record)
  return kept


def require_nonempty_splits(
    records: Mapping[str, Sequence[SourceRecord]], source: str, skips: SkippedRecords
) -> None:
  """Raises :class:`FatalInputError` if a split has no usable record left."""
  for split in SPLITS:
    if not records.get(split):
      skipped = skips.as_dict().get(split)
      why = f' (skipped: {skipped})' if skipped else ''
      raise FatalInputError(f'{source}: split {split!r} has no usable record{why}')


# ---------------------------------------------------------------------------
# The TFDS builder


@dataclasses.dataclass
class SplitContents:
  """The examples written for one split: how many, and their products and classes."""

  records: int = 0
  products: set[str] = dataclasses.field(default_factory=set)
  categories: set[str] = dataclasses.field(default_factory=set)
  subcategories: set[str] = dataclasses.field(default_factory=set)

  def add(self, record: SourceRecord) -> None:
    self.records += 1
    self.products.add(record.product_id)
    self.categories.add(record.category)
    self.subcategories.add(record.subcategory)


def split_counts(contents: Mapping[str, SplitContents]) -> dict[str, dict[str, int]]:
  """``{split: {records, products, categories, subcategories}}`` and, once the training
  split is there, ``only_in_train: {categories, subcategories}``: the classes of training
  that no other split has (JSON serialisable, for the metadata and the summary)."""
  counts = {
      split: {
          'records': c.records,
          'products': len(c.products),
          'categories': len(c.categories),
          'subcategories': len(c.subcategories),
      }
      for split, c in contents.items()
  }
  train = contents.get(TRAIN_SPLIT)
  if train is not None:
    others = [c for split, c in contents.items() if split != TRAIN_SPLIT]
    counts['only_in_train'] = {
        level: len(getattr(train, level).difference(*(getattr(c, level) for c in others)))
        for level in ('categories', 'subcategories')
    }
  return counts


@dataclasses.dataclass
class BuildPlan:
  """Everything a builder needs to write a dataset, decided before the build.

  Attributes:
    options: the preparation options.
    source: where the images come from.
    records: the records of each split that passed the text checks.
    main_categories, sub_categories: the class lists.
    tokenizer: the (already trained) tokenizer.
    skips: the log of skipped records, which the build keeps adding to.
    image_workers: turn the source's images into stored images (started).
    category_counts: examples per split and category, filled by the build.
    split_contents: what each split holds as written, filled by the build.
  """

  options: PrepareOptions
  source: DataSource
  records: dict[str, list[SourceRecord]]
  main_categories: list[str]
  sub_categories: list[str]
  tokenizer: Tokenizer
  skips: SkippedRecords
  image_workers: ImageWorkers
  category_counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
  split_contents: dict[str, SplitContents] = dataclasses.field(default_factory=dict)
  attribute_classes: dict[str, list[str]] = dataclasses.field(default_factory=dict)


def make_features(
    options: PrepareOptions,
    main_categories: Sequence[str],
    sub_categories: Sequence[str],
    attribute_classes: Mapping[str, Sequence[str]] | None = None,
) -> tfds.features.FeaturesDict:
  """The feature schema of a prepared dataset (see :mod:`input_pipeline.schema`); with
  ``attribute_classes``, also ``attributes``: int32 [K], the index of each attribute's
  value in its class list (the lists are in the metadata's ``attributes``)."""
  size = options.image_size
  if options.image_encoding == 'raw':
    image = tfds.features.Tensor(
        shape=(size, size, 3), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
    )
  else:
    image = tfds.features.Image(shape=(size, size, 3), dtype=np.uint8, encoding_format='jpeg')
  extra = {}
  if attribute_classes:
    extra[schema.ATTRIBUTES] = tfds.features.Tensor(shape=(len(attribute_classes),), dtype=np.int32)
  return tfds.features.FeaturesDict(
      {
          **extra,
          schema.ID: tfds.features.Text(),
          schema.PRODUCT_ID: tfds.features.Text(),
          schema.IMAGE: image,
          schema.CAPTION: tfds.features.Text(),
          schema.INPUT_IDS: tfds.features.Tensor(shape=(options.text_length,), dtype=np.int32),
          schema.CATEGORY: tfds.features.ClassLabel(names=list(main_categories)),
          schema.SUBCATEGORY: tfds.features.ClassLabel(names=list(sub_categories)),
          schema.POSE: tfds.features.Text(),
      }
  )


class PreparedDatasetBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A TFDS builder that writes what a :class:`BuildPlan` decided.

  Subclasses (one per dataset) set ``OPTIONS_CLS`` and :meth:`make_source`.

  Constructed without a plan (``tfds.builder(name, data_dir=...)``), it reads
  a prepared dataset: its features are restored from the files on disk. It
  cannot prepare one then; ``python -m input_pipeline.prepare`` (or
  :func:`input_pipeline.prepare.prepare_dataset`) does.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  OPTIONS_CLS: ClassVar[type[PrepareOptions]] = PrepareOptions
  DESCRIPTION: ClassVar[str] = ''

  # TFDS prints "Downloading and preparing dataset ..." and "... downloaded and prepared to
  # <staging folder>"; nothing is downloaded, and `prepare` prints its own lines.
  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass

  def __init__(self, *, plan: BuildPlan | None = None, **kwargs):
    self._plan = plan
    super().__init__(**kwargs)

  @tfds_utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This builder's source file.

    TFDS's own lookup goes through ``importlib_resources`` (a package it does
    not install on Python >= 3.9) for packages like this one, so it is
    replaced by the plain answer.
    """
    return epath.Path(inspect.getfile(cls))

  @classmethod
  @abc.abstractmethod
  def make_source(cls, manual_dir: str | None, options: PrepareOptions) -> DataSource:
    """Opens the source (fatal problems, e.g. missing files, raise here)."""

  def _info(self) -> tfds.core.DatasetInfo:
    if self._plan is None:
      features = self._features_on_disk()
      metadata = None
    else:
      plan = self._plan
      features = make_features(
          plan.options, plan.main_categories, plan.sub_categories, plan.attribute_classes
      )
      metadata = tfds.core.MetadataDict(
          format_version=METADATA_FORMAT_VERSION,
          dataset=self.name,
          main_categories=list(plan.main_categories),
          sub_categories=list(plan.sub_categories),
          attributes={name: list(values) for name, values in plan.attribute_classes.items()},
          tokenizer=plan.tokenizer.info(),
          text_length=plan.options.text_length,
          caption_fields=plan.options.caption_fields,
          image_size=plan.options.image_size,
          image_encoding=plan.options.image_encoding,
          crop_white_margin=plan.options.crop_white_margin,
          options=plan.options.as_dict(),
      )
    return tfds.core.DatasetInfo(
        builder=self, description=self.DESCRIPTION, features=features, metadata=metadata
    )

  def _features_on_disk(self) -> tfds.features.FeatureConnector | None:
    if tfds.core.features.feature.make_config_path(self.data_path).exists():
      return tfds.features.FeatureConnector.from_config(os.fspath(self.data_path))
    return None

  def _split_generators(self, dl_manager):
    del dl_manager  # The plan's source knows where the data is.
    if self._plan is None:
      raise NotPreparedError(
          f'{self.name} is prepared by `python -m input_pipeline.prepare {self.name} '
          f'--data_dir=...`, which trains the tokenizer first; tfds cannot prepare it alone'
      )
    return {split: self._generate_examples(split) for split in self._plan.records}

  def _generate_examples(self, split: str) -> Iterator[tuple[str, dict]]:
    plan = self._plan
    counts = collections.Counter()
    contents = SplitContents()
    images = plan.image_workers.process(plan.source.images(split, plan.records[split]))
    for record, image in images:  # image: uint8 [S, S, 3] or JPEG bytes, or an error
      if isinstance(image, ImageDecodeError):
        path = plan.source.image_file(record)
        detail = f'{path}: {image}' if path else str(image)
        image = BadRecordError(record.where, image.reason, detail)
      if isinstance(image, BadRecordError):
        plan.skips.add(split, image)
        continue
      counts[record.category] += 1
      contents.add(record)
      extra = {}
      if plan.attribute_classes:
        extra[schema.ATTRIBUTES] = attribute_indices(record, plan.attribute_classes)
      yield record.id, {
          **extra,
          schema.ID: record.id,
          schema.PRODUCT_ID: record.product_id,
          schema.IMAGE: image,
          schema.CAPTION: record.caption,
          schema.INPUT_IDS: plan.tokenizer.encode(record.caption, plan.options.text_length),
          schema.CATEGORY: record.category,
          schema.SUBCATEGORY: record.subcategory,
          schema.POSE: record.pose,
      }
    if not counts:
      raise FatalInputError(
          f'{self.name}: no record of split {split!r} has a usable image '
          f'(skipped: {plan.skips.as_dict().get(split)})'
      )
    plan.category_counts[split] = dict(sorted(counts.items()))
    plan.split_contents[split] = contents
    # The metadata is written after every split is generated, so it sees these.
    self.info.metadata['category_counts'] = dict(plan.category_counts)
    self.info.metadata['split_counts'] = split_counts(plan.split_contents)
    self.info.metadata['skipped'] = plan.skips.as_dict()
    self.info.metadata['skipped_examples'] = list(plan.skips.messages)


def attribute_indices(
    record: SourceRecord, attribute_classes: Mapping[str, Sequence[str]]
) -> np.ndarray:
  """int32 [K]: the index of each of ``record.attributes`` in its class list."""
  if len(record.attributes) != len(attribute_classes):
    raise FatalInputError(
        f'{record.where}: {len(record.attributes)} attribute values for '
        f'{len(attribute_classes)} attributes {list(attribute_classes)}'
    )
  indices = []
  for (name, values), value in zip(attribute_classes.items(), record.attributes):
    if value not in values:
      raise FatalInputError(f'{record.where}: {name} {value!r} is not one of {list(values)}')
    indices.append(list(values).index(value))
  return np.asarray(indices, np.int32)


def training_captions(records: Mapping[str, Sequence[SourceRecord]]) -> Iterable[str]:
  """The captions the tokenizer is trained on: those of the training split."""
  return [record.caption for record in records[TRAIN_SPLIT]]
