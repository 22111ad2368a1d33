"""The one door from the model side to the data: ``config.dataset`` -> a prepared dataset.

``load_dataset`` prepares a missing dataset (process 0, with the config's options) and opens
it; ``resolve_config`` fills in the sizes that come from the data (vocabulary, classes,
attributes) and checks the others; ``tokenizer_dir`` says where its tokenizer is. The
training loop and the evaluators import this module; the model, the losses and the steps do
not (they must import without TensorFlow).
"""
import os

import jax
import ml_collections

from input_pipeline import errors as data_errors
from input_pipeline import pipeline
from input_pipeline import prepare
from mvlt_jax.errors import ConfigError


def load_dataset(config):
  """The prepared dataset of ``config.dataset``.

  A dataset prepared already (e.g. by hand with ``python -m input_pipeline.prepare`` and
  options of its own) is used as it is; with ``dataset.auto_prepare`` process 0 prepares a
  missing one first, with the config's options, while the other processes wait.
  """
  ds = config.dataset
  if ds.auto_prepare and jax.process_index() == 0:
    try:
      prepare.load_prepared(ds.name, ds.data_dir)
    except data_errors.NotPreparedError:
      result = prepare.prepare_dataset(ds.name, ds.data_dir, manual_dir=ds.manual_dir or None,
                                       **prepare_options(config))
      print(result.format(), flush=True)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices('dataset prepared')
  return prepare.load_prepared(ds.name, ds.data_dir)


def prepare_options(config) -> dict:
  ds = config.dataset
  options = dict(tokenizer=ds.tokenizer, vocab_file=ds.vocab_file or None,
                 text_length=config.model.text_length, caption_fields=ds.caption_fields)
  options.update(ds.prepare_options.to_dict())
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
    elif config.model[field] != value and (field == 'vocab_size'
                                           or 'recognition' in config.model.heads):
      raise ConfigError(f'config.model.{field}={config.model[field]} but the dataset '
                        f'{config.dataset.name} in {config.dataset.data_dir} has {value}; set '
                        f'--config.model.{field}=0 to take it from the data.')
  if 'attributes' in config.model.heads:
    attributes = (prepared.builder.info.metadata or {}).get('attributes') or {}
    classes = tuple(len(values) for values in attributes.values())
    where = os.path.join(config.dataset.data_dir, config.dataset.name)
    if not classes:
      raise ConfigError(f"config.model.heads has 'attributes' but {where} has no attribute "
                        'labels: only synthetic_fashion has them, and one prepared by an '
                        f"older version does not (remove {where} to prepare it again), or "
                        "leave 'attributes' out of config.model.heads.")
    if not config.model.attribute_classes:
      config.model.attribute_classes = classes
    elif tuple(config.model.attribute_classes) != classes:
      raise ConfigError(f'config.model.attribute_classes={tuple(config.model.attribute_classes)}'
                        f' but {where} has {classes} ({list(attributes)}); set '
                        '--config.model.attribute_classes="()" to take them from the data.')
  text_length = features['input_ids'].shape[0]
  if text_length != config.model.text_length:
    raise ConfigError(f'config.model.text_length={config.model.text_length} but the dataset '
                      f'{config.dataset.name} in {config.dataset.data_dir} was prepared with '
                      f'text_length={text_length}: prepare it again (remove '
                      f'{os.path.join(config.dataset.data_dir, config.dataset.name)}, or use '
                      f'another --config.dataset.data_dir), or set '
                      f'--config.model.text_length={text_length}.')
  return config


def tokenizer_dir(config) -> str:
  """Where the prepared dataset of ``config.dataset`` keeps its tokenizer."""
  return prepare.tokenizer_dir(config.dataset.data_dir, config.dataset.name)


def steps_per_epoch(config) -> int:
  """Training steps per epoch of ``config.dataset.train_split`` (global batches)."""
  ds = config.dataset
  return pipeline.steps_per_epoch(ds.data_dir, ds.name, ds.train_split,
                                  config.global_batch_size)


def train_batches(config, start_step: int = 0):
  """This host's training batches from ``start_step`` on (``pipeline.train_iterator``)."""
  ds = config.dataset
  return pipeline.train_iterator(
      ds.data_dir, ds.name, ds.train_split, config.global_batch_size, seed=config.seed,
      start_step=start_step, itm_negative_prob=ds.itm_negative_prob,
      itm_hard_negative_prob=ds.itm_hard_negative_prob,
      itm_hard_negative_from_step=ds.itm_hard_negative_from_step,
      image_size=config.model.image_size, prefetch=ds.prefetch,
      num_workers=ds.num_workers or None,
      attribute_labels='attributes' in config.model.heads,
      repeats=ds.repeated_sampling)


def validation_batches(config):
  """The validation batches of ``config.dataset.eval_split``: the training pipeline's (ITM
  pairs drawn the same way) from step 0, one copy per item."""
  ds = config.dataset
  return pipeline.train_iterator(
      ds.data_dir, ds.name, ds.eval_split, config.global_batch_size, seed=config.seed,
      itm_negative_prob=ds.itm_negative_prob, itm_hard_negative_prob=ds.itm_hard_negative_prob,
      image_size=config.model.image_size, num_workers=ds.num_workers or None,
      attribute_labels='attributes' in config.model.heads)
