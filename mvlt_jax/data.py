"""The one door from the model side to the data: ``config.dataset`` -> a prepared dataset.

Training: ``load_dataset`` prepares a missing dataset (process 0, with the config's options)
and opens it; ``resolve_config`` fills in the sizes that come from the data (vocabulary,
classes, attributes) and checks the others; ``train_batches`` / ``validation_batches`` feed
the loop. Evaluation: ``open_eval_split`` opens (or prepares) the split an evaluator reads,
``eval_batches`` / ``split_view`` / the retrieval-set functions read it. ``tokenizer_dir`` and
``dataset_tokenizer`` say where a dataset's tokenizer is and load it.

The training loop and the evaluators import this module; the model, the losses and the steps
do not (they must import without TensorFlow), and ``checkpoint`` loads a tokenizer through
``input_pipeline.tokenizer``, which needs no TensorFlow either.
"""

import os

import jax
import ml_collections

from input_pipeline import errors as data_errors
from input_pipeline import pipeline
from input_pipeline import prepare
from input_pipeline import retrieval_sets
from input_pipeline.tokenizer import checkpoint_tokenizer, load_tokenizer
from mvlt_jax.errors import ConfigError


def load_dataset(config):
  """The prepared dataset of ``config.dataset``.

  A dataset prepared already (e.g. by hand with ``python -m input_pipeline.prepare`` and
  options of its own) is used as it is; with ``dataset.auto_prepare`` process 0 prepares a
  missing one first, with the config's options, while the other processes wait.

  With ``dataset.prepare_options.tokenizer_from=CKPT`` the dataset must have the tokenizer
  of the checkpoint CKPT (same fingerprint), whoever prepared it.

  Raises:
    ConfigError: the dataset's tokenizer is not the one ``tokenizer_from`` names.
  """
  ds = config.dataset
  if ds.auto_prepare and jax.process_index() == 0:
    try:
      prepare.load_prepared(ds.name, ds.data_dir)
    except data_errors.NotPreparedError:
      result = prepare.prepare_dataset(
          ds.name, ds.data_dir, manual_dir=ds.manual_dir or None, **prepare_options(config)
      )
      print(result.format(), flush=True)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    multihost_utils.sync_global_devices('dataset prepared')
  prepared = prepare.load_prepared(ds.name, ds.data_dir)
  _check_tokenizer_from(config, prepared)
  return prepared


def _check_tokenizer_from(config, prepared) -> None:
  ds = config.dataset
  checkpoint = ds.prepare_options.get('tokenizer_from')
  if not checkpoint:
    return
  wanted = checkpoint_tokenizer(checkpoint)
  if wanted is not None and wanted.fingerprint == prepared.tokenizer.fingerprint:
    return
  where = os.path.join(ds.data_dir, ds.name)
  theirs = 'keeps no tokenizer' if wanted is None else f'has {wanted.fingerprint[:12]}...'
  raise ConfigError(
      f'config.dataset.prepare_options.tokenizer_from={checkpoint}, but {where} was prepared '
      f'with another tokenizer (fingerprint {prepared.tokenizer.fingerprint[:12]}...; the '
      f'checkpoint {theirs}): prepare it again (`python -m input_pipeline.prepare {ds.name} '
      f'--data_dir={ds.data_dir} --tokenizer_from={checkpoint} --overwrite ...`), or use '
      'another --config.dataset.data_dir.'
  )


def prepare_options(config) -> dict:
  """The options ``load_dataset`` prepares a missing dataset with: the dataset fields, the
  model's text length and ``dataset.prepare_options``. With ``prepare_options.tokenizer_from``
  the checkpoint's tokenizer replaces the one ``dataset.tokenizer`` / ``vocab_file`` /
  ``prepare_options.vocab_size`` describe (those are left out); the text length stays the
  model's (``model.text_length``, which ``resolve_config`` holds the dataset to)."""
  ds = config.dataset
  options = dict(
      tokenizer=ds.tokenizer,
      vocab_file=ds.vocab_file or None,
      text_length=config.model.text_length,
      caption_fields=ds.caption_fields,
  )
  extra = ds.prepare_options.to_dict()
  if extra.get('tokenizer_from'):
    del options['tokenizer'], options['vocab_file']
    extra.pop('vocab_size', None)
  options.update(extra)
  return options


def resolve_config(config, prepared) -> ml_collections.ConfigDict:
  """A copy of ``config`` with the sizes that come from the data filled in and checked."""
  config = ml_collections.ConfigDict(config.to_dict())
  tokenizer = prepared.tokenizer
  features = prepared.builder.info.features
  from_data = {
      'vocab_size': tokenizer.vocab_size,
      'num_main_classes': len(features['category'].names),
      'num_sub_classes': len(features['subcategory'].names),
  }
  for field, value in from_data.items():
    if config.model[field] == 0:
      config.model[field] = value
    elif config.model[field] != value and (
        field == 'vocab_size' or 'recognition' in config.model.heads
    ):
      raise ConfigError(
          f'config.model.{field}={config.model[field]} but the dataset '
          f'{config.dataset.name} in {config.dataset.data_dir} has {value}; set '
          f'--config.model.{field}=0 to take it from the data.'
      )
  if 'attributes' in config.model.heads:
    attributes = (prepared.builder.info.metadata or {}).get('attributes') or {}
    classes = tuple(len(values) for values in attributes.values())
    where = os.path.join(config.dataset.data_dir, config.dataset.name)
    if not classes:
      raise ConfigError(
          f"config.model.heads has 'attributes' but {where} has no attribute "
          'labels: only synthetic_fashion has them, and one prepared by an '
          f'older version does not (remove {where} to prepare it again), or '
          "leave 'attributes' out of config.model.heads."
      )
    if not config.model.attribute_classes:
      config.model.attribute_classes = classes
    elif tuple(config.model.attribute_classes) != classes:
      raise ConfigError(
          f'config.model.attribute_classes={tuple(config.model.attribute_classes)}'
          f' but {where} has {classes} ({list(attributes)}); set '
          '--config.model.attribute_classes="()" to take them from the data.'
      )
  text_length = features['input_ids'].shape[0]
  if text_length != config.model.text_length:
    raise ConfigError(
        f'config.model.text_length={config.model.text_length} but the dataset '
        f'{config.dataset.name} in {config.dataset.data_dir} was prepared with '
        f'text_length={text_length}: prepare it again (remove '
        f'{os.path.join(config.dataset.data_dir, config.dataset.name)}, or use '
        f'another --config.dataset.data_dir), or set '
        f'--config.model.text_length={text_length}.'
    )
  return config


def tokenizer_dir(config) -> str:
  """Where the prepared dataset of ``config.dataset`` keeps its tokenizer."""
  return prepare.tokenizer_dir(config.dataset.data_dir, config.dataset.name)


def steps_per_epoch(config) -> int:
  """Training steps per epoch of ``config.dataset.train_split`` (global batches)."""
  ds = config.dataset
  return pipeline.steps_per_epoch(ds.data_dir, ds.name, ds.train_split, config.global_batch_size)


def train_batches(config, start_step: int = 0):
  """This host's training batches from ``start_step`` on (``pipeline.train_iterator``)."""
  ds = config.dataset
  return pipeline.train_iterator(
      ds.data_dir,
      ds.name,
      ds.train_split,
      config.global_batch_size,
      seed=config.seed,
      start_step=start_step,
      itm_negative_prob=ds.itm_negative_prob,
      itm_hard_negative_prob=ds.itm_hard_negative_prob,
      itm_hard_negative_from_step=ds.itm_hard_negative_from_step,
      image_size=config.model.image_size,
      prefetch=ds.prefetch,
      num_workers=ds.num_workers or None,
      attribute_labels='attributes' in config.model.heads,
      repeats=ds.repeated_sampling,
  )


def validation_batches(config):
  """The validation batches of ``config.dataset.eval_split``: the training pipeline's (ITM
  pairs drawn the same way) from step 0, one copy per item."""
  ds = config.dataset
  return pipeline.train_iterator(
      ds.data_dir,
      ds.name,
      ds.eval_split,
      config.global_batch_size,
      seed=config.seed,
      itm_negative_prob=ds.itm_negative_prob,
      itm_hard_negative_prob=ds.itm_hard_negative_prob,
      image_size=config.model.image_size,
      num_workers=ds.num_workers or None,
      attribute_labels='attributes' in config.model.heads,
  )


# ----------------------------------------------------------------------------- evaluation

PreparedDatasetError = pipeline.PreparedDatasetError
local_batch_size = pipeline.local_batch_size
retrieval_records = retrieval_sets.records_from_metadata
candidate_batches = retrieval_sets.candidate_batches
load_or_build_retrieval_sets = retrieval_sets.load_or_build
# In the file names of the evaluator's candidate sets: a file of an older format (an older
# rule) is never picked up.
RETRIEVAL_SETS_FORMAT_VERSION = retrieval_sets.FORMAT_VERSION


def open_eval_split(config, split: str, model_config) -> pipeline.PreparedSplit:
  """Opens ``split`` of ``config.dataset``; with ``dataset.auto_prepare`` a missing dataset is
  prepared first, its text length taken from ``model_config`` (the checkpoint's)."""
  ds = config.dataset
  try:
    return pipeline.open_split(ds.data_dir, ds.name, split)
  except pipeline.PreparedDatasetError:
    if not ds.auto_prepare:
      raise
  data_config = ml_collections.ConfigDict(config.to_dict())
  data_config.model = model_config
  load_dataset(data_config)
  return pipeline.open_split(ds.data_dir, ds.name, split)


def text_length(prepared: pipeline.PreparedSplit) -> int:
  """Tokens per caption in a prepared split."""
  return prepared.features[pipeline.INPUT_IDS_KEY].shape[0]


def class_names(prepared: pipeline.PreparedSplit) -> dict[str, list[str]]:
  """{'main': category names, 'sub': sub-category names} of a prepared split."""
  return {
      'main': list(prepared.features[pipeline.CATEGORY_KEY].names),
      'sub': list(prepared.features[pipeline.SUBCATEGORY_KEY].names),
  }


def dataset_tokenizer(data_dir: str, name: str):
  """The tokenizer a prepared dataset was tokenized with, or None when it keeps none."""
  directory = prepare.tokenizer_dir(data_dir, name)
  return load_tokenizer(directory) if os.path.isdir(directory) else None


def eval_batches(
    data_dir: str,
    name: str,
    split: str,
    batch_size: int,
    *,
    image_size: int,
    prefetch: int,
    num_workers,
):
  """One pass over a split in stored order (``pipeline.eval_iterator``)."""
  return pipeline.eval_iterator(
      data_dir,
      name,
      split,
      batch_size,
      image_size=image_size,
      prefetch=prefetch,
      num_workers=num_workers,
  )


def split_view(
    data_dir: str, name: str, split: str, *, image_size: int, prefetch: int, num_workers
):
  """(metadata, view): a split's per-record labels and ids, and its records by id."""
  metadata = pipeline.read_metadata(data_dir, name, split)
  view = pipeline.SplitView(
      data_dir,
      name,
      split,
      image_size=image_size,
      metadata=metadata,
      prefetch=prefetch,
      num_workers=num_workers,
  )
  return metadata, view
