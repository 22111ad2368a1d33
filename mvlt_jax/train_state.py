"""The training state: a small pytree dataclass, and how it is created.

``create_train_state`` (fresh, from ``config.seed``), ``load_init_from`` (parameters of a
checkpoint or a PyTorch file over a fresh state) and ``init_variables`` (the one model
initialiser, shared with the summary and the converter).
"""

import dataclasses
import json
import os
import re
from typing import Any, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util

from mvlt_jax.errors import ConfigError


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: number of optimizer updates applied
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # raw key data (uint32) of the base key; step keys are fold_in(key, step)

  @property
  def key(self) -> jax.Array:
    return jax.random.wrap_key_data(self.rng)

  @property
  def variables(self) -> dict:
    return {'params': self.params, 'batch_stats': self.batch_stats}


def init_variables(model, model_config, rng: jax.Array, batch_size: int = 1) -> dict:
  """``model``'s variables, initialised on zero inputs of ``model_config``'s sizes.

  The one initialiser of training, the summary and the converter; under ``jax.eval_shape``
  it gives the shapes without computing anything.
  """
  size = model_config.image_size
  images = jnp.zeros((batch_size, size, size, 3), jnp.float32)
  input_ids = jnp.zeros((batch_size, model_config.text_length), jnp.int32)
  return model.init({'params': rng}, images, input_ids)


def create_train_state(model, config, optimizer) -> TrainState:
  # 'rbg' keys compile the initialisers much faster; the step keys use the default PRNG.
  init_rng = jax.random.key(config.seed, impl=config.init_prng_impl)
  variables = init_variables(model, config.model, init_rng)
  params = variables['params']
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get('batch_stats', {}),
      opt_state=optimizer.init(params),
      rng=jax.random.key_data(jax.random.key(config.seed + 1)),
  )


def load_init_from(state: TrainState, config) -> tuple[TrainState, set[str]]:
  """Replaces params / BatchNorm statistics with those of ``config.init_from``; returns the
  new state and the names of the top-level parameter modules that were loaded (in whole or
  in part).

  ``init_from`` is a checkpoint directory (ours, or converted) or a PyTorch file (e.g. PVT's
  ImageNet ``pvt_tiny.pth``, or a release checkpoint), converted on the fly with the
  converter's strictness and messages. Every array whose name and shape match is loaded;
  arrays of the new model that the source lacks (e.g. new heads, or all but the vision path
  for ``pvt_tiny.pth``) keep their fresh initialisation, and the source's arrays without a
  place in the model are not used. An array of another shape there (class heads of another
  dataset, the word table of another vocabulary, the text positions of another text length)
  is an error, unless ``config.init_from_mismatch='fresh'``: then it starts fresh. The word
  table (and the MLM decoder's bias) of a checkpoint whose tokenizer (``CKPT/tokenizer``) is
  not the dataset's count as such an array whatever their shapes: the same ids would mean
  other words (``prepare --tokenizer_from=CKPT`` gives a dataset the checkpoint's tokenizer
  and text length). Prints what was loaded and what was not, grouped by module.

  Raises:
    ConfigError: shapes (or vocabularies) differ with ``init_from_mismatch='error'``, or
      ``init_from_mismatch`` is neither.
  """
  from mvlt_jax import convert  # pylint: disable=import-outside-toplevel

  path = config.init_from
  mismatch = config.get('init_from_mismatch', 'error')
  if mismatch not in INIT_FROM_MISMATCH:
    raise ConfigError(
        f'config.init_from_mismatch={mismatch!r}: choose one of {", ".join(INIT_FROM_MISMATCH)}.'
    )
  class_mapping = None
  if 'recognition' in config.model.heads and path.endswith(convert.TORCH_FILE_SUFFIXES):
    # A release recognition checkpoint: its head rows follow the release's class order; map
    # them by name to the classes of the dataset this run trains on.
    class_mapping = convert.make_class_mapping(
        os.path.join(config.dataset.data_dir, config.dataset.name)
    )
  try:
    variables, description = convert.load_init_variables(
        path, config.model, class_mapping=class_mapping
    )
  except convert.ConversionError as error:
    if mismatch == 'fresh' and 'mis-shaped' in str(error):
      raise convert.ConversionError(
          f'{error}\n  (init_from_mismatch=fresh applies to checkpoint folders: convert the '
          'file first with `python -m mvlt_jax.convert from-torch --torch=FILE '
          '--config=<the config it was trained with> --out=DIR`, then '
          '--config.init_from=DIR)'
      ) from error
    raise
  vocabulary = _vocabulary(path, config)
  plan = _match(state, variables, other_vocabulary=vocabulary is not None and vocabulary.differ)
  if plan.fresh_for_shape and mismatch == 'error':
    raise ConfigError(plan.error_message(path, vocabulary, config.dataset))
  merged = {
      collection: _merged(collection, getattr(state, collection), variables.get(collection), plan)
      for collection in COLLECTIONS
  }
  logging.info('init_from %s (%s): %s', path, description, plan.counts_text())
  if jax.process_index() == 0:
    print(f'init_from {path}: {description}', flush=True)
    print('\n'.join(plan.report_lines(path, vocabulary, config.dataset)), flush=True)
  loaded_modules = {name.split('/')[1] for name in plan.loaded if name.startswith('params/')}
  return state.replace(**merged), loaded_modules


# The first module of the vision path: present in any source that initialises it.
VISION_MARKER = 'patch_embed1'


def warn_if_vision_from_scratch(config, loaded_params: set[str]) -> None:
  """One line when a run that expects PVT ImageNet weights starts the vision path fresh."""
  if not config.get('pretrained_vision_expected', False):
    return
  if VISION_MARKER in loaded_params:
    return
  message = (
      'warning: the vision path starts from scratch (no PVT ImageNet weights: pass '
      "--config.init_from=pvt_tiny.pth); the paper's Table 4 reports retrieval about "
      '6 points of R@5 lower without them. Running on.'
  )
  logging.warning(message)
  if jax.process_index() == 0:
    print(message, flush=True)


# ---------------------------------------------------------------------------------- init_from

INIT_FROM_MISMATCH = ('error', 'fresh')
COLLECTIONS = ('params', 'batch_stats')
# The arrays sized by the vocabulary: the word table and the bias of the MLM decoder (whose
# weight is the word table, tied).
WORD_TABLE = 'params/text_embeddings/word_embeddings/embedding'
VOCABULARY_ARRAYS = (WORD_TABLE, 'params/mlm_head/bias')
# Entries of one kind printed in full; the rest are counted.
_MAX_LISTED = 12


@dataclasses.dataclass(frozen=True)
class _Vocabulary:
  """What ``tokenizer.json`` records of the checkpoint's and of the dataset's tokenizers
  (``vocab_size``, ``fingerprint``; ``None`` where one keeps none)."""

  checkpoint: Optional[dict]
  dataset: Optional[dict]

  @property
  def differ(self) -> bool:
    return (
        self.checkpoint is not None
        and self.dataset is not None
        and self.checkpoint.get('fingerprint') != self.dataset.get('fingerprint')
    )

  def describe(self) -> str:
    def text(info):
      return f'{info.get("vocab_size")} ids, tokenizer {str(info.get("fingerprint"))[:12]}...'

    return (
        f"the dataset's vocabulary ({text(self.dataset)}) is not the checkpoint's "
        f'({text(self.checkpoint)})'
    )


# The saved tokenizer's description, written by input_pipeline.tokenizer.Tokenizer.save (read
# here as JSON, without the tokenizer library), and where a prepared dataset keeps its
# tokenizer: <data_dir>/<name>/tokenizer (input_pipeline.prepare.TOKENIZER_DIR).
_TOKENIZER_JSON = 'tokenizer.json'
_DATASET_TOKENIZER_DIR = 'tokenizer'


def _tokenizer_info(directory: str) -> Optional[dict]:
  """``tokenizer.json`` of the tokenizer saved in ``directory`` (None when there is none)."""
  path = os.path.join(directory, _TOKENIZER_JSON)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, 'rb') as f:
      info = json.loads(f.read().decode('utf-8'))
  except (OSError, ValueError) as error:
    raise ConfigError(f'init_from: cannot read {path} ({error}).') from None
  if not isinstance(info, dict):
    raise ConfigError(f'init_from: {path} is not a tokenizer description.')
  return info


def _vocabulary(path: str, config) -> Optional[_Vocabulary]:
  """The tokenizers of the checkpoint ``path`` (a checkpoint folder or one of its steps) and
  of the run's dataset (None for a PyTorch file, which keeps none)."""
  from mvlt_jax import checkpoint  # pylint: disable=import-outside-toplevel

  if os.path.isfile(path):
    return None
  folder = os.path.abspath(path)
  parent = os.path.dirname(folder)
  if os.path.basename(folder).isdigit() and os.path.isfile(
      os.path.join(parent, checkpoint.CONFIG_FILE)
  ):
    folder = parent  # a <step> folder: config.json and the tokenizer are beside the steps
  dataset = os.path.join(config.dataset.data_dir, config.dataset.name, _DATASET_TOKENIZER_DIR)
  return _Vocabulary(
      checkpoint=_tokenizer_info(os.path.join(folder, checkpoint.TOKENIZER_DIR)),
      dataset=_tokenizer_info(dataset),
  )


def _flat(tree) -> dict[str, Any]:
  return {'/'.join(map(str, key)): leaf for key, leaf in traverse_util.flatten_dict(tree).items()}


def _shape_text(shape) -> str:
  return '[' + ', '.join(str(d) for d in shape) + ']'


@dataclasses.dataclass
class _InitPlan:
  """Which arrays (``collection/module/.../leaf``) ``init_from`` loads and which start fresh."""

  loaded: list[str]
  sizes: dict[str, int]  # values of each array of the model
  model_arrays: dict[str, list[str]]  # collection -> its arrays in the model
  shape_differs: list[tuple[str, tuple, tuple]]  # (name, in the checkpoint, here)
  other_vocabulary: list[str]  # same shape, but the checkpoint's tokenizer is another one
  not_in_checkpoint: list[str]
  not_in_model: list[str]

  @property
  def fresh_for_shape(self) -> list[str]:
    """Arrays the checkpoint has but that do not fit: what init_from_mismatch decides."""
    return [name for name, _, _ in self.shape_differs] + self.other_vocabulary

  def counts_text(self) -> str:
    loaded = set(self.loaded)
    parts = []
    for collection, title in (('params', 'parameter arrays'), ('batch_stats', 'BatchNorm')):
      names = self.model_arrays.get(collection, [])
      if collection == 'batch_stats' and not names:
        continue
      took = [name for name in names if name in loaded]
      values = sum(self.sizes[name] for name in took)
      total = sum(self.sizes[name] for name in names)
      text = f'{len(took)} of {len(names)} {title}'
      if collection == 'params':
        text += f' ({values:,} of {total:,} values)'
      else:
        text += ' statistics'
      parts.append(text)
    return 'loaded ' + ', '.join(parts)

  def _notes(self, path: str, vocabulary: Optional[_Vocabulary], dataset, verb: str):
    """Why the word table and the text positions do not fit, and what keeps them
    (``dataset``: the run's ``config.dataset``)."""
    notes = []
    if any(name in VOCABULARY_ARRAYS for name in self.fresh_for_shape):
      why = (
          vocabulary.describe()
          if vocabulary is not None and vocabulary.differ
          else "the dataset's vocabulary is not the checkpoint's"
      )
      notes.append(f'the word table and the MLM decoder {verb}: {why}')
    lengths = [
        (there[1], here[1])
        for name, there, here in self.shape_differs
        if name.startswith('params/text_pos_embed') and len(there) == len(here) == 3
    ]
    if lengths:
      notes.append(
          f"the text position embeddings {verb}: the checkpoint's text length is "
          f"{lengths[0][0]}, this model's {lengths[0][1]}"
      )
    if notes:
      keep = (
          f'`python -m input_pipeline.prepare {dataset.name} --data_dir={dataset.data_dir} '
          f'--tokenizer_from={path} --overwrite ...`'
      )
      if lengths:
        keep += f', then train with --config.model.text_length={lengths[0][0]}'
      notes.append(
          f"a dataset prepared with the checkpoint's tokenizer and text length keeps them ({keep})"
      )
    elif vocabulary is not None and vocabulary.checkpoint is None and WORD_TABLE in self.loaded:
      notes.append(
          'the checkpoint keeps no tokenizer: its word table is loaded as it is (right only '
          'if the dataset was tokenized with its vocabulary, e.g. BERT uncased for the '
          "release's)"
      )
    return notes

  def report_lines(self, path: str, vocabulary: Optional[_Vocabulary], dataset):
    """What the run prints: the counts, then one line per kind of array not loaded."""
    lines = [f'init_from {path}: {self.counts_text()}']
    if self.shape_differs:
      lines.append(
          '  fresh (shape differs, in the checkpoint -> here): '
          + _shapes_listing(self.shape_differs)
      )
    if self.other_vocabulary:
      lines.append(
          '  fresh (same shape, other vocabulary): ' + _names_listing(self.other_vocabulary)
      )
    lines += [f'  {note}' for note in self._notes(path, vocabulary, dataset, 'start fresh')]
    if self.not_in_checkpoint:
      lines.append(
          '  fresh (not in the checkpoint; arrays per module): '
          + _modules_listing(self.not_in_checkpoint)
      )
    if self.not_in_model:
      lines.append(
          '  not used (not in this model; arrays per module): '
          + _modules_listing(self.not_in_model)
      )
    return lines

  def error_message(self, path: str, vocabulary: Optional[_Vocabulary], dataset) -> str:
    """The one-line refusal of ``init_from_mismatch='error'``."""
    parts = [f'init_from {path}:']
    if self.shape_differs:
      parts.append(
          f'{len(self.shape_differs)} parameter arrays have other shapes in the checkpoint '
          f'than in the configured model (checkpoint -> here): '
          f'{_shapes_listing(self.shape_differs)}.'
      )
    if self.other_vocabulary:
      parts.append(
          f'The word table would map ids to other words ({_names_listing(self.other_vocabulary)}'
          ' have the same shapes, but the tokenizers differ).'
      )
    for note in self._notes(path, vocabulary, dataset, 'do not fit'):
      parts.append(note[0].upper() + note[1:] + '.')
    fit = sum(name.startswith('params/') for name in self.loaded)
    parts.append(
        f'Set --config.init_from_mismatch=fresh to load the {fit} parameter arrays that fit '
        'and start these fresh.'
    )
    return ' '.join(parts)


def _match(state: TrainState, variables: dict, other_vocabulary: bool) -> _InitPlan:
  """Compares the model's arrays with the checkpoint's, name by name."""
  plan = _InitPlan([], {}, {}, [], [], [], [])
  for collection in COLLECTIONS:
    current = _flat(getattr(state, collection) or {})
    loaded = _flat(variables.get(collection) or {})
    plan.model_arrays[collection] = [f'{collection}/{name}' for name in current]
    for name, leaf in current.items():
      full = f'{collection}/{name}'
      plan.sizes[full] = int(np.prod(leaf.shape))
      if name not in loaded:
        plan.not_in_checkpoint.append(full)
        continue
      there = tuple(np.shape(loaded[name]))
      if there != tuple(leaf.shape):
        plan.shape_differs.append((full, there, tuple(leaf.shape)))
      elif other_vocabulary and full in VOCABULARY_ARRAYS:
        plan.other_vocabulary.append(full)
      else:
        plan.loaded.append(full)
    plan.not_in_model += [f'{collection}/{name}' for name in loaded if name not in current]
  return plan


def _merged(collection: str, current, loaded, plan: _InitPlan):
  """``current`` (the model's ``collection``) with the arrays that ``plan`` loads taken from
  ``loaded``, in ``current``'s dtypes."""
  if not current:
    return current
  take = set(plan.loaded)
  flat_loaded = traverse_util.flatten_dict(loaded) if loaded else {}
  out = {}
  for key, leaf in traverse_util.flatten_dict(current).items():
    if '/'.join((collection, *map(str, key))) in take:
      out[key] = jnp.asarray(flat_loaded[key], leaf.dtype)
    else:
      out[key] = leaf
  return traverse_util.unflatten_dict(out)


def _display(name: str) -> str:
  """An array's name as printed: parameters without the ``params/`` prefix."""
  return name.removeprefix('params/')


def _shapes_listing(entries: list[tuple[str, tuple, tuple]]) -> str:
  """``module/leaf [a] -> [b]; module: leaf [a] -> [b], leaf [c] -> [d]; ...``: the arrays
  of one module together."""
  groups: dict[str, list[str]] = {}
  for name, there, here in entries[:_MAX_LISTED]:
    module, _, leaf = _display(name).rpartition('/')
    groups.setdefault(module, []).append(f'{leaf} {_shape_text(there)} -> {_shape_text(here)}')
  texts = []
  for module, items in groups.items():
    if not module:  # top-level arrays (the text position embeddings)
      texts += items
    elif len(items) == 1:
      texts.append(f'{module}/{items[0]}')
    else:
      texts.append(f'{module}: {", ".join(items)}')
  text = '; '.join(texts)
  if len(entries) > _MAX_LISTED:
    text += f'; and {len(entries) - _MAX_LISTED} more'
  return text


def _names_listing(names: list[str]) -> str:
  listed = ', '.join(_display(name) for name in names[:_MAX_LISTED])
  return listed + (f', and {len(names) - _MAX_LISTED} more' if len(names) > _MAX_LISTED else '')


def _modules_listing(names: list[str]) -> str:
  """Arrays counted per top-level module, numbered siblings joined: ``text_embed1-4 (16),
  sub_cls_head (3), batch_stats/t2i_head (22)``."""
  counts: dict[str, int] = {}
  for name in names:
    parts = _display(name).split('/')
    module = '/'.join(parts[:2]) if parts[0] == 'batch_stats' else parts[0]
    counts[module] = counts.get(module, 0) + 1
  # Numbered siblings (block1 .. block4, text_embed1 .. text_embed4) as one entry.
  merged: dict[tuple[str, bool], list] = {}
  for module, count in counts.items():
    match = re.fullmatch(r'(.*?)(\d+)', module)
    stem = match.group(1) if match else module
    entry = merged.setdefault((stem, bool(match)), [[], 0])
    if match:
      entry[0].append(int(match.group(2)))
    entry[1] += count
  texts = []
  for (stem, _), (numbers, count) in merged.items():
    if len(numbers) > 1 and sorted(numbers) == list(range(min(numbers), max(numbers) + 1)):
      label = f'{stem}{min(numbers)}-{max(numbers)}'
    elif numbers:
      label = ', '.join(f'{stem}{n}' for n in numbers)
    else:
      label = stem
    texts.append(f'{label} ({count})')
  listed = ', '.join(texts[:_MAX_LISTED])
  if len(texts) > _MAX_LISTED:
    listed += f', and {len(texts) - _MAX_LISTED} more modules'
  return listed
