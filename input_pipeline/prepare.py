"""Prepares a dataset for training: ``python -m input_pipeline.prepare NAME --data_dir=DIR``.

NAME is ``fashion_gen`` (official h5 files in ``--manual_dir``), ``catalog``
(a JSONL/CSV catalog and its images in ``--manual_dir``) or
``synthetic_fashion`` (generated, no input needed). Preparation

0. locks the dataset's folder ``<data_dir>/<name>`` (``mvlt_jax.locking``:
   ``<data_dir>/<name>/.lock``, a kernel ``flock``, and ``.lock.holder`` naming the
   holder while it is held): a second preparation of the same dataset fails at once
   with an error naming the process that holds it; the lock of a process that has
   ended, however, is released by the system (kill -9 included);
1. reads every record's text, skipping bad records (``--strict``: stops at
   the first, exit status 1, with the file/record and the reason);
2. trains the SentencePiece tokenizer on the training captions (or reads the
   WordPiece ``--vocab_file``, or takes the tokenizer of a checkpoint,
   ``--tokenizer_from=CKPT``: the one saved in ``CKPT/tokenizer``, with the text
   length of ``CKPT/config.json`` unless ``--text_length`` is given, so that the
   checkpoint's word table fits the dataset when training starts from it);
3. writes the TFDS dataset and the tokenizer into a staging folder
   (``<data_dir>/<name>/.staging-*/``) and, once both are complete, moves them into
   place (``<data_dir>/<name>/1.0.0/`` and ``<data_dir>/<name>/tokenizer/``),
   replacing the dataset prepared before (``--overwrite``) only then;
4. prints a summary: examples per split and category, the split counts
   (records, products, categories and sub-categories per split, and the classes
   only in training), skipped records and why.

A preparation is complete when :func:`load_prepared` accepts it: the dataset
folder exists and the tokenizer's fingerprint matches the one recorded in the
dataset metadata. A failed or interrupted preparation leaves nothing that
passes this check (its staging folder is removed, or by the next run), and the
next run starts over. A failed ``--overwrite`` (a bad record with ``--strict``,
a fatal input error, an interruption while building) leaves the dataset
prepared before as it was, usable (an interruption during the final two
renames puts it back); only the death of the process between those renames can
leave neither (never a mix: the fingerprint check refuses it). Overwriting needs
the disk space of both datasets until the swap.

Running again with the same options does nothing; with other options it needs
``--overwrite``. ``--strict`` on a dataset that is already prepared does not
re-read the input: if the preparation skipped no record the dataset is what a
strict one would be, and is kept; if it skipped records, the run fails naming
how many and why, and ``--strict --overwrite`` prepares it again strictly
(keeping the old one if that fails).

Limits on hostile input: only ``image_ops.ACCEPTED_FORMATS`` are decoded,
``--max_image_bytes`` and ``--max_image_pixels`` bound what one image may cost
(see ``datasets/base.PrepareOptions``), and names from the input are printed
with control characters escaped (``errors.printable``).

Python API: :func:`prepare_dataset`, :func:`load_prepared`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

if __name__ == '__main__':  # the command line: TensorFlow's start-up lines off, before import
  from mvlt_jax import console

  console.quiet_tensorflow()

import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from tensorflow_datasets.core import constants as tfds_constants

from input_pipeline.datasets.base import (
    METADATA_FORMAT_VERSION,
    SPLITS,
    BuildPlan,
    PrepareOptions,
    PreparedDatasetBuilder,
    drop_bad_text_records,
    drop_unknown_categories,
    require_nonempty_splits,
    training_captions,
)
from input_pipeline.datasets.catalog import Catalog
from input_pipeline.datasets.fashion_gen import FashionGen
from input_pipeline.datasets.synthetic_fashion import SyntheticFashion
from input_pipeline.errors import (
    NotPreparedError,
    PrepareError,
    SkippedRecords,
    TokenizerError,
    printable,
)
from input_pipeline.image_workers import ImageWorkers, default_num_workers
from input_pipeline.tokenizer import (
    Tokenizer,
    WordPieceTokenizer,
    checkpoint_tokenizer,
    load_tokenizer,
    train_sentencepiece,
)
from mvlt_jax import cli, locking
from mvlt_jax.errors import MVLTError

BUILDERS: dict[str, type[PreparedDatasetBuilder]] = {
    builder.name: builder for builder in (FashionGen, Catalog, SyntheticFashion)
}
TOKENIZER_DIR = 'tokenizer'
# Inside <data_dir>/<name>: a preparation's staging folder (a TFDS data dir of its own, which
# also receives the dataset it replaces before that is deleted), and the staging folder of
# earlier versions (the tokenizer alone). Left over by a crash, they are removed by the next
# run (under the lock).
_STAGING_PREFIX = '.staging-'
_OLD_STAGING_PREFIX = '.tokenizer.incomplete-'
# How TFDS names its unfinished dataset folders (see tfds.core.utils.incomplete_dir).
_TFDS_INCOMPLETE_PREFIX = tfds_constants.INCOMPLETE_PREFIX


class PreparedDataset(NamedTuple):
  """A prepared dataset: its TFDS builder, its tokenizer and its metadata."""

  builder: PreparedDatasetBuilder
  tokenizer: Tokenizer
  metadata: dict[str, Any]


@dataclasses.dataclass
class PrepareSummary:
  """What a preparation produced (also built from the metadata of an existing one)."""

  name: str
  dataset_dir: str
  tokenizer_dir: str
  tokenizer: dict[str, Any]
  num_examples: dict[str, int]
  category_counts: dict[str, dict[str, int]]
  skipped: dict[str, dict[str, int]]
  skipped_examples: list[str]
  seconds: float
  already_prepared: bool = False
  # datasets.base.split_counts of the dataset (empty for one prepared before they were recorded).
  split_counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
  # The checkpoint whose tokenizer the dataset was prepared with (tokenizer_from), or ''.
  tokenizer_from: str = ''
  text_length: int = 0

  @property
  def num_skipped(self) -> int:
    return sum(sum(reasons.values()) for reasons in self.skipped.values())

  def format(self) -> str:
    """The human-readable summary the command prints."""
    verb = 'Already prepared' if self.already_prepared else 'Prepared'
    lines = [
        f'{verb} {self.name} in {self.dataset_dir} ({self.seconds:.1f} s)',
        f'tokenizer: {self.tokenizer["kind"]}, {self.tokenizer["vocab_size"]} ids '
        f'({self.tokenizer_dir})'
        + (
            f', from the checkpoint {self.tokenizer_from} (text length {self.text_length})'
            if self.tokenizer_from
            else ''
        ),
        'examples per split: '
        + ', '.join(f'{split} {count}' for split, count in self.num_examples.items()),
    ]
    if self.split_counts:
      lines.append(format_split_counts(self.split_counts))
    for split, counts in self.category_counts.items():
      lines.append(
          f'{split} examples per category: '
          + ', '.join(f'{category} {count}' for category, count in counts.items())
      )
    lines.append(f'skipped records: {self.num_skipped}')
    for split, reasons in self.skipped.items():
      lines.append(f'  {split}: ' + ', '.join(f'{reason} {n}' for reason, n in reasons.items()))
    if self.skipped_examples:
      lines.append('  the first ones:')
      lines.extend(f'    {message}' for message in self.skipped_examples)
    # Category names, paths and the skipped records' messages come from the input.
    return '\n'.join(printable(line) for line in lines)


def _plural(count: int, singular: str, plural: str) -> str:
  return f'{count:,} {singular if count == 1 else plural}'


def format_split_counts(counts: dict[str, dict[str, int]]) -> str:
  """The summary line of :func:`input_pipeline.datasets.base.split_counts`, e.g. ``split: train
  1,790 records, 870 products, 13 categories, 136 sub-categories; validation ... (66
  sub-categories, 1 category only in train)``."""
  parts = []
  for split in SPLITS:
    if split in counts:
      c = counts[split]
      parts.append(
          f'{split} '
          + ', '.join(
              (
                  _plural(c['records'], 'record', 'records'),
                  _plural(c['products'], 'product', 'products'),
                  _plural(c['categories'], 'category', 'categories'),
                  _plural(c['subcategories'], 'sub-category', 'sub-categories'),
              )
          )
      )
  line = 'split: ' + '; '.join(parts)
  only = counts.get('only_in_train')
  if only is not None:
    line += (
        f' ({_plural(only["subcategories"], "sub-category", "sub-categories")}, '
        f'{_plural(only["categories"], "category", "categories")} only in train)'
    )
  return line


def builder_class(name: str) -> type[PreparedDatasetBuilder]:
  if name not in BUILDERS:
    raise PrepareError(f'unknown dataset {name!r}, expected one of {sorted(BUILDERS)}')
  return BUILDERS[name]


def dataset_root(data_dir: str, name: str) -> str:
  """``<data_dir>/<name>``: holds the TFDS version folder and the tokenizer."""
  return os.path.join(os.fspath(data_dir), name)


def tokenizer_dir(data_dir: str, name: str) -> str:
  return os.path.join(dataset_root(data_dir, name), TOKENIZER_DIR)


def _prepare_command(name: str, data_dir: str) -> str:
  return f'python -m input_pipeline.prepare {name} --data_dir={data_dir}'


def load_prepared(name: str, data_dir: str) -> PreparedDataset:
  """The prepared dataset ``name`` in ``data_dir``.

  Raises:
    NotPreparedError: it is not (completely) prepared there.
  """
  builder = builder_class(name)(data_dir=os.fspath(data_dir))
  # (Checking the info file first spares TFDS's warning about a missing folder.)
  info_file = builder.data_path / tfds_constants.DATASET_INFO_FILENAME
  if not info_file.exists() or not builder.is_prepared():
    raise NotPreparedError(
        f'{name} is not prepared in {data_dir}: run ' f'`{_prepare_command(name, data_dir)}`'
    )
  metadata = dict(builder.info.metadata or {})
  if metadata.get('format_version') != METADATA_FORMAT_VERSION:
    raise NotPreparedError(
        f'{builder.data_dir}: metadata format {metadata.get("format_version")!r}, expected '
        f'{METADATA_FORMAT_VERSION}: prepare it again with --overwrite'
    )
  try:
    tokenizer = load_tokenizer(tokenizer_dir(data_dir, name))
  except TokenizerError as e:
    raise NotPreparedError(
        f'{name} is not completely prepared in {data_dir} ({e}): run '
        f'`{_prepare_command(name, data_dir)}`'
    ) from e
  if tokenizer.fingerprint != metadata['tokenizer']['fingerprint']:
    raise NotPreparedError(
        f'{name} is not completely prepared in {data_dir}: its tokenizer is not the one '
        f'the dataset was built with: run `{_prepare_command(name, data_dir)}`'
    )
  return PreparedDataset(builder, tokenizer, metadata)


def _summary(
    prepared: PreparedDataset, seconds: float, already_prepared: bool, data_dir: str
) -> PrepareSummary:
  metadata = prepared.metadata
  splits = prepared.builder.info.splits
  return PrepareSummary(
      name=prepared.builder.name,
      dataset_dir=os.fspath(prepared.builder.data_dir),
      tokenizer_dir=tokenizer_dir(data_dir, prepared.builder.name),
      tokenizer=dict(metadata['tokenizer']),
      num_examples={split: splits[split].num_examples for split in SPLITS},
      category_counts=dict(metadata.get('category_counts', {})),
      skipped=dict(metadata.get('skipped', {})),
      skipped_examples=list(metadata.get('skipped_examples', [])),
      seconds=seconds,
      already_prepared=already_prepared,
      split_counts=dict(metadata.get('split_counts', {})),
      tokenizer_from=(metadata.get('options') or {}).get('tokenizer_from') or '',
      text_length=int(metadata.get('text_length', 0)),
  )


def make_tokenizer(options: PrepareOptions, captions: Sequence[str]) -> Tokenizer:
  """The tokenizer ``options`` ask for (SentencePiece trained on ``captions``, a WordPiece
  vocabulary, or the tokenizer of the checkpoint ``options.tokenizer_from``)."""
  if options.tokenizer_from:
    return _checkpoint_tokenizer(options)
  if options.tokenizer == 'wordpiece':
    return WordPieceTokenizer.from_vocab_file(options.vocab_file)
  return train_sentencepiece(captions, options.vocab_size)


def _checkpoint_tokenizer(options: PrepareOptions) -> Tokenizer:
  """The tokenizer of ``options.tokenizer_from``, as ``options`` were resolved with."""
  tokenizer = checkpoint_tokenizer(options.tokenizer_from)
  if tokenizer is None or (tokenizer.KIND, tokenizer.vocab_size) != (
      options.tokenizer,
      options.vocab_size,
  ):
    raise PrepareError(f'the tokenizer of {options.tokenizer_from} changed during the run')
  return tokenizer


def _remove_leftovers(root: str) -> None:
  """Removes the staging folders a crashed preparation left in ``root``."""
  for entry in os.listdir(root):
    if entry.startswith((_STAGING_PREFIX, _OLD_STAGING_PREFIX, _TFDS_INCOMPLETE_PREFIX)):
      shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def _move_into_place(staged: str, final: str) -> None:
  os.rename(staged, final)


def _install(staged_root: str, root: str, entries: Sequence[str], replaced_dir: str) -> None:
  """Moves each of ``entries`` (the version folder, then the tokenizer) from ``staged_root``
  into ``root``; one already there goes into ``replaced_dir`` first. Should a move fail or
  be interrupted (Ctrl-C), those already there are put back: the dataset prepared before
  stays whole."""
  displaced = []
  try:
    for entry in entries:
      final = os.path.join(root, entry)
      if os.path.exists(final):
        os.rename(final, os.path.join(replaced_dir, entry))
        displaced.append(entry)
      _move_into_place(os.path.join(staged_root, entry), final)
  except BaseException:
    for entry in displaced:
      final = os.path.join(root, entry)
      if os.path.exists(final):  # The new one: back to the staging folder (deleted).
        os.rename(final, os.path.join(staged_root, f'{entry}.new'))
      os.rename(os.path.join(replaced_dir, entry), final)
    raise


def _recorded_options(
    options_cls: type[PrepareOptions], recorded: dict[str, Any]
) -> dict[str, Any]:
  """The options a dataset was prepared with; those it predates take their defaults."""
  defaults = {
      f.name: f.default
      for f in dataclasses.fields(options_cls)
      if f.default is not dataclasses.MISSING
  }
  return {**defaults, **recorded}


def _skipped_text(skipped: dict[str, dict[str, int]]) -> str:
  return '; '.join(
      f'{split}: ' + ', '.join(f'{reason} {n}' for reason, n in reasons.items())
      for split, reasons in skipped.items()
  )


def _check_existing(
    existing: PreparedDataset,
    resolved: PrepareOptions,
    name: str,
    data_dir: str,
    strict: bool,
) -> None:
  """Raises unless ``existing`` is what this run asks for (``prepare_dataset`` then returns
  its summary): the same options and, with ``strict``, no record skipped."""
  recorded = _recorded_options(type(resolved), existing.metadata.get('options', {}))
  asked = resolved.as_dict()
  if resolved.tokenizer_from and recorded.get('tokenizer_from') == resolved.tokenizer_from:
    wanted = _checkpoint_tokenizer(resolved).fingerprint
    if existing.tokenizer.fingerprint != wanted:
      raise PrepareError(
          f'{name} in {data_dir} was prepared with the tokenizer of '
          f'{resolved.tokenizer_from}, which has changed since (fingerprint '
          f'{existing.tokenizer.fingerprint[:12]}... then, {wanted[:12]}... now); pass '
          '--overwrite to prepare it again with the new one'
      )
  if any(recorded.get(k) != v for k, v in asked.items()):
    differences = '; '.join(
        f'{k}: prepared {recorded.get(k)!r}, asked {v!r}'
        for k, v in asked.items()
        if recorded.get(k) != v
    )
    raise PrepareError(
        f'{name} is already prepared in {data_dir} with other options '
        f'({differences}); pass --overwrite to replace it'
    )
  skipped = existing.metadata.get('skipped') or {}
  num_skipped = sum(sum(reasons.values()) for reasons in skipped.values())
  if strict and num_skipped:
    raise PrepareError(
        f'{name} in {data_dir} was prepared skipping {_plural(num_skipped, "record", "records")} '
        f'({_skipped_text(skipped)}), so not strictly; --strict does not re-check a prepared '
        'dataset: pass --strict --overwrite to prepare it again strictly (the prepared dataset '
        'is kept if that fails)'
    )


def prepare_dataset(
    name: str,
    data_dir: str,
    manual_dir: str | None = None,
    strict: bool = False,
    overwrite: bool = False,
    num_workers: int | None = None,
    **options: Any,
) -> PrepareSummary:
  """Prepares dataset ``name`` in ``data_dir`` (see the module docstring).

  Args:
    name: ``fashion_gen``, ``catalog`` or ``synthetic_fashion``.
    data_dir: where prepared datasets live.
    manual_dir: the input files (``fashion_gen`` and ``catalog``).
    strict: stop at the first bad record instead of skipping it.
    overwrite: replace a dataset prepared with other options.
    num_workers: processes preparing images (default: the usable CPUs); the
      result does not depend on it.
    **options: the dataset's options (see its ``OPTIONS_CLS``); ``None``
      values keep the default.

  Returns:
    The summary of the preparation (or of the existing one, if it was already
    prepared with the same options).

  Raises:
    PrepareError: bad options or input (its message names the file/record).
  """
  start = time.perf_counter()
  data_dir = os.fspath(data_dir)
  builder_cls = builder_class(name)
  resolved = builder_cls.OPTIONS_CLS.from_overrides(name, options)
  root = dataset_root(data_dir, name)
  with contextlib.ExitStack() as stack:
    try:
      os.makedirs(root, exist_ok=True)
      stack.enter_context(locking.exclusive(root, f'prepare {name}'))
    except OSError as e:  # A data dir that cannot be written, ...
      raise PrepareError(f'cannot lock {root}: {e}') from e
    try:
      existing = load_prepared(name, data_dir)
    except NotPreparedError:
      existing = None
    if existing is not None and not overwrite:
      _check_existing(existing, resolved, name, data_dir, strict)
      return _summary(existing, time.perf_counter() - start, True, data_dir)
    _remove_leftovers(root)
    _build(builder_cls, resolved, root, data_dir, manual_dir, strict, num_workers)
    return _summary(load_prepared(name, data_dir), time.perf_counter() - start, False, data_dir)


def _build(
    builder_cls: type[PreparedDatasetBuilder],
    resolved: PrepareOptions,
    root: str,
    data_dir: str,
    manual_dir: str | None,
    strict: bool,
    num_workers: int | None,
) -> None:
  """Prepares the dataset in a staging folder of ``root``, then moves it into place (the
  caller holds ``root``'s lock)."""
  name = builder_cls.name
  source = builder_cls.make_source(manual_dir, resolved)
  skips = SkippedRecords(strict=strict)
  records = drop_bad_text_records(source.read_records(skips), skips)
  main_categories, sub_categories = source.class_names(records)
  records = drop_unknown_categories(
      records, main_categories, sub_categories, skips, source.class_list_source
  )
  require_nonempty_splits(records, name, skips)

  # The staging folder is a data dir of its own: TFDS writes <staging>/<name>/<version>.
  staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root)
  try:
    staged_root = os.path.join(staging, name)
    os.makedirs(staged_root)
    tokenizer = make_tokenizer(resolved, training_captions(records))
    tokenizer.save(os.path.join(staged_root, TOKENIZER_DIR))
    with ImageWorkers(resolved.storage_spec(), num_workers or default_num_workers()) as workers:
      plan = BuildPlan(
          options=resolved,
          source=source,
          records=records,
          main_categories=main_categories,
          sub_categories=sub_categories,
          tokenizer=tokenizer,
          skips=skips,
          image_workers=workers,
          attribute_classes=source.attribute_classes(),
      )
      builder = builder_cls(data_dir=staging, plan=plan)
      counts = ', '.join(
          f'{split} {len(split_records)}' for split, split_records in records.items()
      )
      print(f'Preparing {name} in {root}: {counts} records ...', flush=True)
      tfds.disable_progress_bar()  # TFDS's bars name the staging files; the line above says it
      builder.download_and_prepare(
          download_dir=os.path.join(staging, 'downloads'),  # Nothing is downloaded.
          download_config=tfds.download.DownloadConfig(
              manual_dir=manual_dir, try_download_gcs=False
          ),
      )
    # Complete: replace the dataset prepared before. Should the process die between the
    # two moves, the tokenizer's fingerprint does not match: nothing passes for prepared.
    replaced = os.path.join(staging, 'replaced')
    os.makedirs(replaced)
    _install(staged_root, root, (str(builder_cls.VERSION), TOKENIZER_DIR), replaced)
  finally:
    shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------
# Command line


# absl flags, as main.py's. The flags live on a FlagValues of their own per call, not on absl's
# global FLAGS: ``main`` is also called in-process (tests, notebooks), once per dataset.
_PROGRAM = 'python -m input_pipeline.prepare'
_USAGE = f"""usage: {_PROGRAM} NAME --data_dir=DIR [--manual_dir=DIR] [--strict] [--overwrite]
           [--option=value ...]

Prepares a dataset (TFDS + tokenizer) for training and evaluation. NAME is one of
{', '.join(sorted(BUILDERS))}. Options left out take the dataset's defaults.
"""
# The flags that are not options of the dataset (PrepareOptions).
_NOT_OPTIONS = ('data_dir', 'manual_dir', 'strict', 'overwrite', 'num_workers')


def _define_flags(flag_values: flags.FlagValues) -> None:
  f = dict(flag_values=flag_values)
  flags.DEFINE_string('data_dir', None, 'where prepared datasets live (required)', **f)
  flags.DEFINE_string('manual_dir', None, 'input files (fashion_gen h5 files, catalog files)', **f)
  flags.DEFINE_boolean(
      'strict', False, 'stop at the first bad record (default: skip and count ' 'it)', **f
  )
  flags.DEFINE_boolean('overwrite', False, 'replace a dataset prepared with other options', **f)
  flags.DEFINE_integer(
      'num_workers', None, 'processes preparing images (default: the usable ' 'CPUs)', **f
  )
  # Options of every dataset.
  flags.DEFINE_enum('tokenizer', None, ('sentencepiece', 'wordpiece'), 'tokenizer to build', **f)
  flags.DEFINE_string('vocab_file', None, 'BERT uncased vocab.txt (wordpiece)', **f)
  flags.DEFINE_integer('vocab_size', None, 'SentencePiece vocabulary size', **f)
  flags.DEFINE_integer(
      'text_length', None, "length of input_ids (with --tokenizer_from: the checkpoint's)", **f
  )
  flags.DEFINE_string(
      'tokenizer_from',
      None,
      'a checkpoint folder: tokenize with its tokenizer (CKPT/tokenizer) and its text length, '
      'so that fine-tuning from it (--config.init_from) keeps its word table',
      **f,
  )
  flags.DEFINE_string('caption_fields', None, 'title | title+description | caption', **f)
  flags.DEFINE_integer('image_size', None, 'side of the stored square images', **f)
  flags.DEFINE_enum('image_encoding', None, ('raw', 'jpeg'), 'how images are stored', **f)
  flags.DEFINE_integer('jpeg_quality', None, 'JPEG quality (image_encoding=jpeg)', **f)
  flags.DEFINE_integer(
      'max_image_bytes',
      None,
      'an image file larger than this is skipped unread (default 64 MiB)',
      **f,
  )
  flags.DEFINE_integer(
      'max_image_pixels',
      None,
      'an image of more pixels is skipped undecoded (default 100 million)',
      **f,
  )
  flags.DEFINE_boolean(
      'crop_white_margin',
      None,
      'crop white margins before resizing ' '(--nocrop_white_margin: keep them)',
      **f,
  )
  # Catalog options.
  flags.DEFINE_float(
      'validation_fraction', None, 'share of products in validation ' '(single-file catalog)', **f
  )
  flags.DEFINE_string('class_file', None, 'JSON class lists, relative to --manual_dir', **f)
  # synthetic_fashion options.
  flags.DEFINE_integer('num_products', None, 'products in train', **f)
  flags.DEFINE_integer('num_validation_products', None, 'products in validation', **f)
  flags.DEFINE_integer('seed', None, 'seed of the generated catalog', **f)
  flags.DEFINE_integer('max_views', None, 'views per product', **f)


def _parse(argv: Sequence[str]) -> tuple[str, flags.FlagValues]:
  """(dataset name, flags) of the command line ``argv`` (the program first)."""
  options = flags.FlagValues()
  _define_flags(options)
  try:
    positional = options(list(argv))[1:]
  except flags.Error as error:
    raise PrepareError(f'{error} (--help lists the flags)') from error
  if len(positional) != 1 or positional[0] not in BUILDERS:
    given = f' (given: {" ".join(positional)})' if positional else ''
    raise PrepareError(f'name one dataset to prepare: {", ".join(sorted(BUILDERS))}{given}.')
  if not options.data_dir:
    raise PrepareError('--data_dir is required.')
  return positional[0], options


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; returns the exit status (errors print one ``error:`` line).

  ``argv``: the arguments after the program name (default ``sys.argv[1:]``).
  """
  argv = [_PROGRAM, *(sys.argv[1:] if argv is None else argv)]
  if cli.help_requested(argv[1:]):
    options = flags.FlagValues()
    _define_flags(options)
    print(cli.help_text(_USAGE, options))
    return 0
  name = None
  try:
    name, options = _parse(argv)
    values = options.flag_values_dict()
    dataset_options = {
        key: value for key, value in values.items() if key not in _NOT_OPTIONS and value is not None
    }
    summary = prepare_dataset(
        name,
        options.data_dir,
        manual_dir=options.manual_dir,
        strict=options.strict,
        overwrite=options.overwrite,
        num_workers=options.num_workers,
        **dataset_options,
    )
  except MVLTError as e:  # PrepareError, FolderInUseError, ...: one line, no traceback.
    print(f'prepare{" " + name if name else ""}: error: {printable(e)}', file=sys.stderr)
    return 1
  print(summary.format())
  return 0


if __name__ == '__main__':
  sys.exit(main())
