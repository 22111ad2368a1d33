"""Weights in and out: PyTorch (the public MVLT release, PVT-v1) <-> ``mvlt_jax``.

Command line (see ``docs/convert.md``): a command word, then absl flags as ``main.py``'s, the
config's fields overridden after ``--config`` (``--config.model.variant=pvlt_small``);
``--help`` lists the flags, bad input prints one ``error: ...`` line.

  # mvlt_jax checkpoint (or a fresh init) -> release-compatible PyTorch state dict
  python -m mvlt_jax.convert to-torch --checkpoint=PATH --out=model.pth
  python -m mvlt_jax.convert to-torch --init --config=configs/pretrain.py --out=init.safetensors
  # release checkpoint / bare state dict / PVT-v1 ImageNet weights -> mvlt_jax checkpoint
  python -m mvlt_jax.convert from-torch --torch=checkpoint_retrieval.pth \\
      --config=configs/pretrain.py --out=converted/
  # recognition heads: rows mapped by class name between the release's order and a dataset's
  python -m mvlt_jax.convert from-torch --torch=checkpoint_recognition.pth \\
      --config=configs/finetune_recognition.py --class_names=data/fashion_gen \\
      --out=converted/

Name mapping (mechanical; no table of names): the flax path joined with '.' is the
PyTorch name, with the leaf renamed:

  params/.../kernel (Dense, [in, out])          -> .../weight  [out, in]
  params/.../kernel (Conv, [kh, kw, in, out])   -> .../weight  [out, in, kh, kw]
  params/.../scale (LayerNorm, BatchNorm)       -> .../weight
  params/.../embedding (Embed)                  -> .../weight
  params/.../<any other leaf> (bias, pos_embed1, linear_bias ...) -> same name, same array
  batch_stats/.../mean, var                     -> .../running_mean, running_var

Two PyTorch entries have no JAX leaf of their own: ``mlm_head.mlm_decoder.weight`` is the
word-embedding table (tied; exported as a copy, checked for equality on import) and
``*.num_batches_tracked`` of each BatchNorm (exported as 0, dropped on import and reported
as BatchNorm counters, not as ignored weights: PyTorch only reads it when ``momentum=None``,
which the release does not use).

Recognition heads (``sup_cls_head``, ``sub_cls_head``): the release numbers its classes in
first-appearance order (``release_class_order.txt``, shipped beside this module), a prepared
dataset in its ClassLabel order. With ``--class_names`` (``make_class_mapping``) their rows
are mapped by name in both directions; without it they are copied row for row, with a warning.

Training's ``init_from`` reads PyTorch files through ``load_init_variables`` (e.g. the PVT-v1
ImageNet ``pvt_tiny.pth``: the vision path only) and checkpoint directories through
``mvlt_jax.checkpoint``.

PyTorch is imported lazily: JAX-only users of ``mvlt_jax`` never need it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
from typing import Any, Iterable, Mapping, Optional, Sequence

import jax
import numpy as np
from absl import flags
from flax import traverse_util
from ml_collections import config_flags

from mvlt_jax import cli, train_state
from mvlt_jax.errors import MVLTError
from mvlt_jax.models.mvlt import ATTRIBUTE_LABELS, HEAD_NAMES

Variables = dict[str, Any]  # {'params': ..., 'batch_stats': ...}
FlatKey = tuple[str, ...]  # ('params', 'block1', '0', 'attn', 'q', 'kernel')

TIED_DECODER_KEY = 'mlm_head.mlm_decoder.weight'
WORD_EMBEDDING_KEY = 'text_embeddings.word_embeddings.weight'
NUM_BATCHES_TRACKED = 'num_batches_tracked'

# Key groups, by the PyTorch name's top-level module. Used by ``allow_missing`` /
# ``allow_unexpected`` and in reports. Each head of ``HEAD_NAMES`` is a group of its own.
_GROUP_PATTERNS = {
    'vision': re.compile(r'(pos_embed\d+|patch_embed\d+|block\d+)(\.|$)'),
    'text': re.compile(r'(text_embeddings|text_embed\d+|text_pos_embed\d+)(\.|$)'),
    'mlm': re.compile(r'mlm_head(_embed)?(\.|$)'),
    'itm': re.compile(r'itm_head(_embed)?(\.|$)'),
    'mir': re.compile(r't2i_head(\.|$)'),
    'recognition': re.compile(r'(sup|sub)_cls_head(_embed)?(\.|$)'),
    # Not in the release: the demo's attribute heads (mvlt_jax/models/mvlt.py).
    'attributes': re.compile(rf'({"|".join(ATTRIBUTE_LABELS)})_attr\d+_head(_embed)?(\.|$)'),
    # PVT-v1 ImageNet classifier parts that MVLT does not have.
    'pvt_classifier': re.compile(r'(cls_token|norm|head)(\.|$)'),
}
_HEAD_GROUPS = tuple(HEAD_NAMES)
_BATCH_STATS_LEAVES = ('running_mean', 'running_var', NUM_BATCHES_TRACKED)
GROUPS = ('vision', 'text', 'heads', 'batch_stats') + _HEAD_GROUPS

SOURCES = ('auto', 'mvlt', 'pvt')
# How many names an error message lists per category before it summarises.
_MAX_NAMES_LISTED = 40


class ConversionError(MVLTError, ValueError):
  """A checkpoint or state dict that cannot be converted; the message says which and why."""


# ---------------------------------------------------------------------------------------
# Name and layout mapping.
# ---------------------------------------------------------------------------------------

_PARAM_LEAF_TO_TORCH = {'kernel': 'weight', 'scale': 'weight', 'embedding': 'weight'}
_BATCH_STATS_LEAF_TO_TORCH = {'mean': 'running_mean', 'var': 'running_var'}


def torch_name(flat_key: FlatKey) -> str:
  """The PyTorch state-dict name of a flattened flax variable ``(collection, *path)``."""
  collection, *module_path, leaf = flat_key
  if collection == 'params':
    leaf = _PARAM_LEAF_TO_TORCH.get(leaf, leaf)
  elif collection == 'batch_stats':
    if leaf not in _BATCH_STATS_LEAF_TO_TORCH:
      raise ConversionError(f'Unknown batch statistic {"/".join(flat_key)!r}.')
    leaf = _BATCH_STATS_LEAF_TO_TORCH[leaf]
  else:
    raise ConversionError(
        f'Variable collection {collection!r} (at {"/".join(flat_key)}) has '
        'no PyTorch counterpart; expected params and batch_stats only.'
    )
  return '.'.join(module_path + [leaf])


def _kernel_permutation(flat_key: FlatKey, rank: int) -> Optional[tuple[int, ...]]:
  """Axis permutation JAX -> PyTorch of a leaf, or None when the layout is the same."""
  if flat_key[0] != 'params' or flat_key[-1] != 'kernel':
    return None
  if rank == 2:
    return (1, 0)  # Dense [in, out] -> Linear [out, in]
  if rank == 4:
    return (3, 2, 0, 1)  # Conv [kh, kw, in, out] -> Conv2d [out, in, kh, kw]
  raise ConversionError(
      f'Kernel {"/".join(flat_key)} has rank {rank}; only Dense (2) and '
      'Conv2D (4) kernels have a PyTorch layout.'
  )


def to_torch_layout(flat_key: FlatKey, array: np.ndarray) -> np.ndarray:
  permutation = _kernel_permutation(flat_key, array.ndim)
  return array if permutation is None else np.transpose(array, permutation)


def from_torch_layout(flat_key: FlatKey, array: np.ndarray) -> np.ndarray:
  permutation = _kernel_permutation(flat_key, array.ndim)
  return array if permutation is None else np.transpose(array, np.argsort(permutation))


def torch_shape(flat_key: FlatKey, jax_shape: Sequence[int]) -> tuple[int, ...]:
  permutation = _kernel_permutation(flat_key, len(jax_shape))
  shape = tuple(int(d) for d in jax_shape)
  return shape if permutation is None else tuple(shape[i] for i in permutation)


def key_groups(name: str) -> set[str]:
  """The groups a PyTorch key belongs to (``vision``, ``heads``, ``mir``, ``batch_stats`` ...)."""
  groups = {group for group, pattern in _GROUP_PATTERNS.items() if pattern.match(name)}
  if groups & set(_HEAD_GROUPS):
    groups.add('heads')
  if name.rsplit('.', 1)[-1] in _BATCH_STATS_LEAVES:
    groups.add('batch_stats')
  return groups


def parse_groups(groups: Iterable[str] | str, flag: str) -> frozenset[str]:
  """``'heads,text'`` or ``['heads', 'text']`` -> validated set of group names."""
  if isinstance(groups, str):
    groups = [g for g in groups.split(',') if g.strip()]
  groups = frozenset(g.strip() for g in groups)
  unknown = sorted(groups - set(GROUPS))
  if unknown:
    raise ConversionError(f'{flag}: unknown group(s) {unknown}; choose from {list(GROUPS)}.')
  return groups


def _flatten(variables: Mapping[str, Any]) -> dict[FlatKey, Any]:
  return traverse_util.flatten_dict(dict(variables))


def _bn_module_of(name: str) -> str:
  return name.rsplit('.', 1)[0]


# ---------------------------------------------------------------------------------------
# JAX -> PyTorch.
# ---------------------------------------------------------------------------------------


def export_state_dict(
    variables: Mapping[str, Any],
    *,
    num_batches_tracked: int = 0,
    class_mapping: Optional['ClassMapping'] = None,
    seed: int = 0,
    allow_nonfinite: bool = False,
) -> tuple[dict[str, np.ndarray], list[str]]:
  """flax variables -> (``{torch_name: float32 array in PyTorch layout}``, notes).

  The release's keys: adds the tied ``mlm_head.mlm_decoder.weight`` (a copy of the word
  embedding) when the model has an MLM head, and ``num_batches_tracked`` (int64 scalar) for
  every BatchNorm. With ``class_mapping`` the recognition heads' rows are put into the
  release's order by class name (``map_class_rows_to_release``; rows without a partner get
  the PyTorch port's fresh init for ``seed``); without it they are copied as they are and
  the notes hold a warning. ``notes`` says what the mapping did.

  Raises:
    ConversionError: a variable holds NaN or Inf (named), unless ``allow_nonfinite``: then
      they are exported as they are and the notes start with a warning that names them.
  """
  state: dict[str, np.ndarray] = {}
  origin: dict[str, FlatKey] = {}
  flat = {
      flat_key: np.asarray(jax.device_get(value), dtype=np.float32)
      for flat_key, value in _flatten(variables).items()
  }
  nonfinite = _nonfinite_entries({'/'.join(key): array for key, array in flat.items()})
  pre_notes = []
  if nonfinite and not allow_nonfinite:
    raise ConversionError(
        f'non-finite values (NaN/Inf) in {len(nonfinite)} of the {len(flat)} variables: '
        f'{_summarise_entries(nonfinite)}; refusing to export them (--allow_nonfinite / '
        'allow_nonfinite=True exports them as they are).'
    )
  if nonfinite:
    pre_notes.append(
        f'WARNING: exported non-finite values (NaN/Inf) as they are (allow_nonfinite) in '
        f'{len(nonfinite)} variables: {_summarise_entries(nonfinite)}'
    )
  for flat_key, array in flat.items():
    name = torch_name(flat_key)
    if name in state:
      raise ConversionError(
          f'Variables {"/".join(origin[name])} and {"/".join(flat_key)} both '
          f'map to the PyTorch name {name!r}.'
      )
    origin[name] = flat_key
    state[name] = np.array(to_torch_layout(flat_key, array), order='C')  # an owned copy
    if flat_key[0] == 'batch_stats' and flat_key[-1] == 'mean':
      state[f'{_bn_module_of(name)}.{NUM_BATCHES_TRACKED}'] = np.array(
          num_batches_tracked, np.int64
      )
  if any(name.startswith('mlm_head.') for name in state):
    if WORD_EMBEDDING_KEY not in state:
      raise ConversionError(f'The MLM head needs {WORD_EMBEDDING_KEY} (its tied decoder).')
    state[TIED_DECODER_KEY] = state[WORD_EMBEDDING_KEY].copy()
  state, notes = map_class_rows_to_release(state, class_mapping, seed=seed)
  return state, pre_notes + notes


_NONFINITE_IMPORT_WARNING = (
    'WARNING: imported non-finite values (NaN/Inf) as they are (allow_nonfinite)'
)


def _nonfinite_entries(arrays: Mapping[str, Any]) -> list[str]:
  """``'name (3 NaN, 1 Inf of 1024 values)'`` for each floating array holding NaN or Inf."""
  entries = []
  for name, array in arrays.items():
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
      continue
    finite = np.isfinite(array)
    if finite.all():
      continue
    nan = int(np.isnan(array).sum())
    inf = int(array.size - finite.sum()) - nan
    counts = ', '.join(f'{n} {kind}' for n, kind in ((nan, 'NaN'), (inf, 'Inf')) if n)
    entries.append(f'{name} ({counts} of {array.size} values)')
  return entries


def _summarise_entries(entries: Sequence[str], limit: int = 8) -> str:
  """The first ``limit`` entries, then how many more: one line."""
  more = len(entries) - limit
  return ', '.join(entries[:limit]) + (f' ... and {more} more' if more > 0 else '')


def variables_to_numpy_state_dict(
    variables: Mapping[str, Any],
    *,
    num_batches_tracked: int = 0,
    class_mapping: Optional['ClassMapping'] = None,
    seed: int = 0,
    allow_nonfinite: bool = False,
) -> dict[str, np.ndarray]:
  """``export_state_dict`` without its notes (logged: warnings as warnings)."""
  state, notes = export_state_dict(
      variables,
      num_batches_tracked=num_batches_tracked,
      class_mapping=class_mapping,
      seed=seed,
      allow_nonfinite=allow_nonfinite,
  )
  _log_notes(notes)
  return state


def _log_notes(notes: Iterable[str]) -> None:
  for note in notes:
    (logging.warning if note.startswith('WARNING') else logging.info)('%s', note)


def variables_to_torch_state_dict(
    variables: Mapping[str, Any],
    *,
    num_batches_tracked: int = 0,
    class_mapping: Optional['ClassMapping'] = None,
    seed: int = 0,
    allow_nonfinite: bool = False,
) -> dict[str, Any]:
  """flax variables -> PyTorch state dict with exactly the release's keys and shapes.

  Load it with ``strict=True`` into ``mvlt_jax.torch_port.MVLT`` or the release's model of
  the same heads. The tied decoder is a separate tensor (equal values), so the result can
  also be written as safetensors. ``class_mapping``, ``seed``, ``allow_nonfinite``: see
  ``export_state_dict``.
  """
  torch = _import_torch()
  return {
      name: torch.from_numpy(array)
      for name, array in variables_to_numpy_state_dict(
          variables,
          num_batches_tracked=num_batches_tracked,
          class_mapping=class_mapping,
          seed=seed,
          allow_nonfinite=allow_nonfinite,
      ).items()
  }


# ---------------------------------------------------------------------------------------
# PyTorch -> JAX.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class ImportReport:
  """What ``import_state_dict`` did, for logs and the command line."""

  source: str = 'mvlt'
  loaded: list[str] = dataclasses.field(default_factory=list)
  filled_from_init: list[str] = dataclasses.field(default_factory=list)
  ignored: list[str] = dataclasses.field(default_factory=list)
  # ``num_batches_tracked`` of the model's BatchNorms: no JAX counterpart, nothing lost.
  bn_counters: list[str] = dataclasses.field(default_factory=list)
  resized: list[str] = dataclasses.field(default_factory=list)
  # Allowed-missing keys left out of the result (``fill_missing=False``).
  left_out: list[str] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)

  def summary(self) -> str:
    lines = [
        f'source: {self.source}; {len(self.loaded)} tensors loaded, '
        f'{len(self.filled_from_init)} kept from the JAX init, {len(self.ignored)} ignored.'
    ]
    if self.filled_from_init:
      lines.append('kept from the JAX init: ' + _summarise_names(self.filled_from_init))
    if self.left_out:
      lines.append('not in the file, left out: ' + _summarise_names(self.left_out))
    if self.ignored:
      lines.append('ignored: ' + _summarise_names(self.ignored))
    if self.bn_counters:
      lines.append(
          f'BatchNorm counters not needed by JAX: {len(self.bn_counters)} ({NUM_BATCHES_TRACKED})'
      )
    lines += [f'resized: {entry}' for entry in self.resized]
    lines += self.notes
    return '\n'.join(lines)


def _summarise_names(names: Sequence[str]) -> str:
  """Names grouped by top-level module, e.g. ``t2i_head (66), text_embed1 (4)``."""
  counts: dict[str, int] = {}
  for name in names:
    top = name.split('.', 1)[0]
    counts[top] = counts.get(top, 0) + 1
  return ', '.join(f'{top} ({n})' if n > 1 else top for top, n in counts.items())


def _list_names(title: str, entries: Sequence[str]) -> str:
  shown = list(entries[:_MAX_NAMES_LISTED])
  more = len(entries) - len(shown)
  return '\n'.join(
      [f'  {title} ({len(entries)}):']
      + [f'    {e}' for e in shown]
      + ([f'    ... and {more} more'] if more > 0 else [])
  )


def _to_numpy(value: Any, name: str) -> np.ndarray:
  """A torch tensor / numpy array -> numpy (bfloat16/float16 tensors become float32)."""
  if hasattr(value, 'detach'):
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()
    return value.numpy()
  if isinstance(value, np.ndarray) or np.isscalar(value):
    return np.asarray(value)
  raise ConversionError(f'State-dict entry {name!r} is a {type(value).__name__}, not a tensor.')


def detect_source(state_dict: Mapping[str, Any]) -> str:
  """``'pvt'`` for a PVT-v1 classifier (``cls_token``, no text path), else ``'mvlt'``."""
  has_text = any('text' in key_groups(name) for name in state_dict)
  return 'pvt' if 'cls_token' in state_dict and not has_text else 'mvlt'


def _model_config_of(config: Any) -> Any:
  """``config.model`` of a full config, or the model config itself."""
  model_config = config.get('model') if hasattr(config, 'get') else None
  return model_config if model_config is not None else config


def abstract_variables(model: Any, model_config: Any) -> Variables:
  """Shapes and dtypes of ``model``'s variables (``jax.eval_shape``, no computation)."""
  model_config = _model_config_of(model_config)
  return jax.eval_shape(
      lambda rng: train_state.init_variables(model, model_config, rng), jax.random.PRNGKey(0)
  )


def init_variables(model: Any, model_config: Any, seed: int = 0) -> Variables:
  """Fresh variables of ``model`` (its own initialisers) for ``seed``, as numpy arrays.

  Compiled with XLA's backend optimisations off: the init runs once, and this cuts its
  compile time on CPU by more than half.
  """
  model_config = _model_config_of(model_config)
  init = lambda rng: train_state.init_variables(model, model_config, rng)
  key = jax.random.PRNGKey(seed)
  compiled = (
      jax.jit(init)
      .lower(key)
      .compile(
          compiler_options={
              'xla_backend_optimization_level': 0,
              'xla_llvm_disable_expensive_passes': True,
          }
      )
  )
  return jax.tree.map(np.asarray, jax.device_get(compiled(key)))


def _resize_pos_embed(array: np.ndarray, target_shape: tuple[int, ...]) -> Optional[np.ndarray]:
  """A visual position embedding [1, extra + g*g, D] resized to ``target_shape``, or None.

  Bilinear with half-pixel centres (PyTorch ``align_corners=False``, as the model resizes
  at run time); leading extra slots (stage 4's class-token slot) are kept as they are.
  """
  if array.ndim != 3 or len(target_shape) != 3 or array.shape[::2] != target_shape[::2]:
    return None
  target_side = int(round(np.sqrt(target_shape[1])))
  extra = target_shape[1] - target_side**2
  source_side = int(round(np.sqrt(array.shape[1] - extra))) if array.shape[1] > extra else 0
  if source_side**2 + extra != array.shape[1] or extra < 0:
    return None
  torch = _import_torch()
  dim = array.shape[-1]
  grid = (
      torch.from_numpy(np.ascontiguousarray(array[:, extra:]))
      .reshape(1, source_side, source_side, dim)
      .permute(0, 3, 1, 2)
  )  # [1, D, g, g]
  grid = torch.nn.functional.interpolate(
      grid, size=(target_side, target_side), mode='bilinear', align_corners=False
  )
  resized = grid.permute(0, 2, 3, 1).reshape(1, target_side**2, dim).numpy()
  return np.concatenate([array[:, :extra], resized], axis=1)


def import_state_dict(
    state_dict: Mapping[str, Any],
    model: Any,
    model_config: Any,
    *,
    allow_missing: Iterable[str] | str = (),
    allow_unexpected: Iterable[str] | str = (),
    source: str = 'auto',
    allow_untied_decoder: bool = False,
    class_mapping: Optional['ClassMapping'] = None,
    init: Optional[Variables] = None,
    seed: int = 0,
    fill_missing: bool = True,
    allow_nonfinite: bool = False,
) -> tuple[Variables, ImportReport]:
  """PyTorch state dict -> flax variables of ``model``, plus a report of what was done.

  Args:
    state_dict: release/PVT names -> tensors (or numpy arrays).
    model: the flax module (``mvlt_jax.models.build_model(config.model)``).
    model_config: ``config.model`` (or the full config); gives the example input size.
    allow_missing: groups (``heads``, ``text``, ``mir``, ``batch_stats`` ... see ``GROUPS``)
      whose keys may be absent; they keep the values of ``init``.
    allow_unexpected: groups whose keys may be present without a place in the model
      (e.g. ``heads`` when starting recognition from a pre-training checkpoint); ignored.
    source: ``mvlt`` (release state dict), ``pvt`` (PVT-v1 ImageNet classifier: vision
      path only; text and heads come from ``init``; ``norm``/``cls_token``/``head`` ignored)
      or ``auto`` (``pvt`` when the dict has ``cls_token`` and no text path).
    allow_untied_decoder: when ``mlm_head.mlm_decoder.weight`` differs from the word
      embedding, warn and keep the word embedding instead of failing (the JAX model ties
      them; it cannot hold two tables).
    class_mapping: the release's and the dataset's class names (``make_class_mapping``):
      the recognition heads' rows are mapped from the release's order to the dataset's by
      name (``map_class_rows_from_release``); dataset classes without a release row keep
      the init. None: row i -> row i, with a warning in the report when there are rows.
    init: variables that fill the allowed missing keys; by default ``init_variables(model,
      model_config, seed)``, computed only when something is missing.
    seed: seed of that default init.
    fill_missing: False leaves the allowed-missing keys out of the result (listed in
      ``report.left_out``) instead of filling them from the init.
    allow_nonfinite: import tensors that hold NaN or Inf as they are (a warning in the
      report names them) instead of failing.

  Raises:
    ConversionError: listing every missing, unexpected and mis-shaped key by name; or, in
      one line, the tensors with a place in the model that hold NaN or Inf.
  """
  if source not in SOURCES:
    raise ConversionError(f'Unknown source {source!r}; choose one of {SOURCES}.')
  allow_missing = parse_groups(allow_missing, 'allow_missing')
  allow_unexpected = parse_groups(allow_unexpected, 'allow_unexpected')
  arrays = {name: _to_numpy(value, name) for name, value in state_dict.items()}
  if source == 'auto':
    source = detect_source(arrays)
  report = ImportReport(source=source)
  if source == 'pvt':
    allow_missing |= {'text', 'heads', 'batch_stats'}
    report.notes.append(
        'PVT-v1 classifier: vision path loaded; text path and heads keep the ' 'JAX init.'
    )

  template = _flatten(abstract_variables(model, model_config))
  expected = {torch_name(flat_key): flat_key for flat_key in template}
  # Tensors that would enter the model (the tied decoder is compared with the word table).
  nonfinite = _nonfinite_entries(
      {
          name: array
          for name, array in arrays.items()
          if name in expected or name == TIED_DECODER_KEY
      }
  )
  if nonfinite and not allow_nonfinite:
    raise ConversionError(
        f'non-finite values (NaN/Inf) in {len(nonfinite)} tensors: '
        f'{_summarise_entries(nonfinite)}; refusing to import them (--allow_nonfinite / '
        'allow_nonfinite=True imports them as they are).'
    )
  if nonfinite:
    report.notes.append(
        f'{_NONFINITE_IMPORT_WARNING} in {len(nonfinite)} tensors: '
        f'{_summarise_entries(nonfinite)}'
    )
  bn_modules = {_bn_module_of(name) for name, key in expected.items() if key[0] == 'batch_stats'}
  model_rows = {
      level: template[expected[name]].shape[0]
      for level, name in ((level, f'{head}.linear.bias') for level, head in CLASS_HEADS.items())
      if name in expected
  }
  rows_from_init: dict[str, list[int]] = {}
  if model_rows:
    arrays, rows_from_init, notes = map_class_rows_from_release(arrays, class_mapping, model_rows)
    report.notes += notes

  loaded: dict[FlatKey, np.ndarray] = {}
  unexpected, misshaped, untied = [], [], []
  misshaped_names = set()
  for name, array in arrays.items():
    groups = key_groups(name)
    if name in expected:
      flat_key = expected[name]
      want = torch_shape(flat_key, template[flat_key].shape)
      if tuple(array.shape) != want and 'vision' in groups and name.startswith('pos_embed'):
        resized = _resize_pos_embed(array, want)
        if resized is not None:
          report.resized.append(f'{name} {tuple(array.shape)} -> {want}')
          array = resized
      if tuple(array.shape) != want:
        misshaped.append(f'{name}: file {tuple(array.shape)} != model {want}')
        misshaped_names.add(name)
        continue
      loaded[flat_key] = from_torch_layout(flat_key, array).astype(template[flat_key].dtype)
      report.loaded.append(name)
    elif (
        name == TIED_DECODER_KEY
        and WORD_EMBEDDING_KEY in expected
        and any(key.startswith('mlm_head.') for key in expected)
    ):
      words = arrays.get(WORD_EMBEDDING_KEY)
      if words is not None and not np.array_equal(words, array):
        if allow_untied_decoder:
          report.notes.append(
              f'WARNING: {TIED_DECODER_KEY} differs from {WORD_EMBEDDING_KEY};'
              ' the JAX model ties them and keeps the word embedding.'
          )
        else:
          untied.append(
              f'{TIED_DECODER_KEY} differs from {WORD_EMBEDDING_KEY} (max abs diff '
              f'{np.max(np.abs(words - array)) if words.shape == array.shape else "n/a"}'
              '); the JAX model ties them (--allow_untied_decoder keeps the word '
              'embedding)'
          )
    elif name.endswith('.' + NUM_BATCHES_TRACKED) and _bn_module_of(name) in bn_modules:
      report.bn_counters.append(name)  # no JAX counterpart
    elif source == 'pvt' and 'pvt_classifier' in groups:
      report.ignored.append(name)
    elif groups & allow_unexpected:
      report.ignored.append(name)
    else:
      unexpected.append(name)

  missing, to_fill = [], []
  for name, flat_key in expected.items():
    if flat_key in loaded or name in misshaped_names:
      continue
    if not key_groups(name) & allow_missing:
      missing.append(name)
    elif fill_missing:
      to_fill.append(name)
    else:
      report.left_out.append(name)

  if missing or unexpected or misshaped or untied:
    parts = ['State dict does not match the model:']
    for title, entries in (
        ('missing', missing),
        ('unexpected', unexpected),
        ('mis-shaped', misshaped),
        ('untied MLM decoder', untied),
    ):
      if entries:
        parts.append(_list_names(title, entries))
    if missing:
      parts.append(
          f'  (--allow_missing=GROUP,... keeps the JAX init for a group; groups: '
          f'{", ".join(GROUPS)})'
      )
    if unexpected:
      parts.append('  (--allow_unexpected=GROUP,... ignores the keys of a group)')
    raise ConversionError('\n'.join(parts))

  rows_from_init = {
      name: rows for name, rows in rows_from_init.items() if expected.get(name) in loaded
  }
  if to_fill or rows_from_init:
    if init is None:
      init = init_variables(model, model_config, seed)
    init_flat = _flatten(init)
    for name in list(to_fill) + list(rows_from_init):
      if expected[name] not in init_flat:
        raise ConversionError(f'The init variables lack {"/".join(expected[name])} ({name}).')
    for name in to_fill:
      loaded[expected[name]] = np.asarray(init_flat[expected[name]])
      report.filled_from_init.append(name)
    for name, rows in rows_from_init.items():  # dataset classes the release does not know
      flat_key = expected[name]
      value = np.array(to_torch_layout(flat_key, loaded[flat_key]))  # [classes, ...]
      value[rows] = to_torch_layout(flat_key, np.asarray(init_flat[flat_key]))[rows]
      loaded[flat_key] = np.ascontiguousarray(from_torch_layout(flat_key, value))
  return traverse_util.unflatten_dict(loaded), report


def torch_state_dict_to_variables(
    state_dict: Mapping[str, Any],
    model: Any,
    model_config: Any,
    allow_missing: Iterable[str] | str = (),
    **kwargs,
) -> Variables:
  """PyTorch state dict -> flax variables of ``model`` (see ``import_state_dict``)."""
  variables, report = import_state_dict(
      state_dict, model, model_config, allow_missing=allow_missing, **kwargs
  )
  logging.info('Imported PyTorch state dict: %s', report.summary())
  return variables


def check_against_port(
    state_dict: Mapping[str, Any], model_config: Any, class_mapping: Optional['ClassMapping'] = None
) -> None:
  """Checks that ``state_dict`` loads with ``strict=True`` into the PyTorch port of the config
  (with the release's head rows of ``class_mapping`` when the export was mapped)."""
  from mvlt_jax import torch_port  # pylint: disable=import-outside-toplevel

  port_config = torch_port.config_from_model_config(_model_config_of(model_config))
  if class_mapping is not None:
    port_config = dataclasses.replace(
        port_config,
        num_main_classes=class_mapping.release_rows['main'],
        num_sub_classes=class_mapping.release_rows['sub'],
    )
  port = torch_port.MVLT(port_config)
  want = torch_port.state_dict_shapes(port.state_dict())
  have = {name: tuple(value.shape) for name, value in state_dict.items()}
  problems = (
      [f'missing {k}' for k in want if k not in have]
      + [f'unexpected {k}' for k in have if k not in want]
      + [
          f'shape {k}: {have[k]} != port {want[k]}'
          for k in want
          if k in have and have[k] != want[k]
      ]
  )
  if problems:
    raise ConversionError(
        'Exported state dict does not match the PyTorch port:\n' + _list_names('problems', problems)
    )


# ---------------------------------------------------------------------------------------
# Recognition class order: the release's first-appearance order <-> a dataset's names.
# ---------------------------------------------------------------------------------------

# The release's own class template (a copy of the reference's release_class_order.txt).
RELEASE_CLASS_ORDER_FILE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), 'release_class_order.txt'
)
CLASS_LEVELS = ('main', 'sub')
# The recognition head of each level (PyTorch names).
CLASS_HEADS = {'main': 'sup_cls_head', 'sub': 'sub_cls_head'}
# The head parameters that have one row per class (PyTorch layout: the class axis first).
CLASS_ROW_PARAMS = ('linear.weight', 'linear.bias', 'linear_bias')
# Outputs of the release's recognition heads (pvlt_tiny_recognition_state_dict.tsv): 48 main
# categories; 122 sub-category rows for the 121 names of its template (row 121 has no name).
RELEASE_HEAD_ROWS = {'main': 48, 'sub': 122}
# Section headers of the release's template (its spelling), and the level each one lists.
_RELEASE_SECTIONS = {'super-category-templete': 'main', 'sub-category-templete': 'sub'}
_SECTION_HEADER = re.compile(r'#+\s*(\S+)\s*#+')
_CLASS_LINE = re.compile(r'(\d+)\s+(\S.*)')
# A prepared (TFDS) dataset stores its ClassLabel names beside features.json, one per line;
# 'category' / 'subcategory' are the features of input_pipeline/schema.py.
_LABEL_FILES = {'main': 'category.labels.txt', 'sub': 'subcategory.labels.txt'}
# Keys of a JSON file of class names; the second pair is the catalog's class_file.
_JSON_KEYS = (('main', 'sub'), ('categories', 'subcategories'))
NO_CLASS_NAMES_WARNING = (
    "WARNING: no class names given (--class_names / class_mapping): the recognition heads' "
    'rows are copied as they are (row i -> row i). The release numbers its classes in '
    "first-appearance order (release_class_order.txt), not in a prepared dataset's order: "
    "with a release checkpoint, class ids then follow the release's order."
)


def normalize_class_name(name: str) -> str:
  """The key names are matched by: whitespace runs collapsed, ends stripped, case folded."""
  return ' '.join(str(name).split()).casefold()


@dataclasses.dataclass(frozen=True)
class ClassNames:
  """Main and sub category names in class-id order, and the file they came from."""

  main: tuple[str, ...]
  sub: tuple[str, ...]
  source: str

  def __post_init__(self):
    for level in CLASS_LEVELS:
      names = tuple(' '.join(str(name).split()) for name in getattr(self, level))
      seen: dict[str, str] = {}
      for name in names:
        key = normalize_class_name(name)
        if not key:
          raise ConversionError(f'{self.source}: an empty {level} class name.')
        if key in seen:
          raise ConversionError(
              f'{self.source}: {level} class names {seen[key]!r} and {name!r} '
              'are the same after normalising case and whitespace; a '
              'mapping by name needs unique names.'
          )
        seen[key] = name
      object.__setattr__(self, level, names)

  def of(self, level: str) -> tuple[str, ...]:
    return getattr(self, level)


@dataclasses.dataclass(frozen=True)
class ClassMapping:
  """What the recognition heads' rows mean on each side of a conversion.

  ``release``: the PyTorch side's class order (the release's template); ``dataset``: the
  JAX model's (a prepared dataset's ClassLabel names); ``release_rows``: the rows of the
  PyTorch heads written on export (the release's 48 / 122; rows past the named ones have no
  name).
  """

  release: ClassNames
  dataset: ClassNames
  release_rows: Mapping[str, int]

  def __post_init__(self):
    for level in CLASS_LEVELS:
      if self.release_rows[level] < len(self.release.of(level)):
        raise ConversionError(
            f'{self.release.source}: {len(self.release.of(level))} {level} '
            f'class names for a head of {self.release_rows[level]} rows.'
        )


def read_release_class_order(path: Optional[str] = None) -> ClassNames:
  """The release's class order from its template (default: the copy shipped here).

  Format: a header line ``########## super-category-templete ##########`` (main
  categories) or ``... sub-category-templete ...`` (sub-categories), then one line
  ``<index> <NAME>`` per class, indices 0, 1, 2 ... in order.
  """
  path = path or RELEASE_CLASS_ORDER_FILE
  try:
    with open(path, encoding='utf-8') as f:
      lines = f.read().splitlines()
  except OSError as error:
    raise ConversionError(f'{path}: cannot read the release class order: {error}') from error
  sections: dict[str, list[str]] = {}
  level = None
  for number, line in enumerate(lines, start=1):
    text = line.strip()
    if not text:
      continue
    header = _SECTION_HEADER.fullmatch(text)
    if header:
      level = _RELEASE_SECTIONS.get(header.group(1))
      if level is None:
        raise ConversionError(
            f'{path}:{number}: unknown section {header.group(1)!r}; expected '
            f'{sorted(_RELEASE_SECTIONS)}.'
        )
      if level in sections:
        raise ConversionError(f'{path}:{number}: section {header.group(1)!r} appears twice.')
      sections[level] = []
      continue
    match = _CLASS_LINE.fullmatch(text)
    if level is None or not match:
      raise ConversionError(
          f'{path}:{number}: expected a section header or "<index> <NAME>" '
          f'inside a section, got {line!r}.'
      )
    index, name = int(match.group(1)), match.group(2)
    if index != len(sections[level]):
      raise ConversionError(
          f'{path}:{number}: class index {index}, expected '
          f'{len(sections[level])} (indices count up from 0).'
      )
    sections[level].append(name)
  absent = [name for name, lvl in _RELEASE_SECTIONS.items() if lvl not in sections]
  if absent:
    raise ConversionError(f'{path}: no section {absent}; not a release class template.')
  return ClassNames(main=tuple(sections['main']), sub=tuple(sections['sub']), source=path)


def _prepared_dataset_dir(path: str) -> str:
  """The directory (``path``, or one or two levels below it) holding the label files."""

  def has_labels(directory):
    return all(os.path.isfile(os.path.join(directory, f)) for f in _LABEL_FILES.values())

  level = [path]
  for _ in range(3):  # path, DATASET/VERSION below a dataset dir, NAME/VERSION below data_dir
    found = sorted(d for d in level if has_labels(d))
    if len(found) == 1:
      return found[0]
    if len(found) > 1:
      raise ConversionError(
          f'{path}: several prepared datasets or versions: {found}; pass ' 'one of them.'
      )
    level = [
        os.path.join(d, child)
        for d in level
        for child in sorted(os.listdir(d))
        if os.path.isdir(os.path.join(d, child))
    ]
  raise ConversionError(
      f'{path}: no prepared dataset found ({" and ".join(_LABEL_FILES.values())}'
      ' of a TFDS version directory, here or up to two levels below).'
  )


def read_class_names(path: str) -> ClassNames:
  """A dataset's main / sub category names in class-id order.

  ``path``: a prepared dataset (its version directory, the dataset directory above it, or
  the data_dir above that: the ClassLabel files ``category.labels.txt`` /
  ``subcategory.labels.txt``), or a JSON file ``{"main": [...], "sub": [...]}`` (also
  accepted: ``{"categories": [...], "subcategories": [...]}``, the catalog's class_file).
  """
  if os.path.isdir(path):
    directory = _prepared_dataset_dir(path)
    names = {}
    for level, filename in _LABEL_FILES.items():
      with open(os.path.join(directory, filename), encoding='utf-8') as f:
        names[level] = tuple(line.strip() for line in f.read().split('\n') if line.strip())
    return ClassNames(main=names['main'], sub=names['sub'], source=directory)
  if not os.path.isfile(path):
    raise ConversionError(
        f'{path}: no such file or directory (class names: a prepared '
        'dataset directory or a JSON file).'
    )
  try:
    with open(path, encoding='utf-8') as f:
      content = json.load(f)
  except (OSError, ValueError) as error:
    raise ConversionError(f'{path}: cannot read class names as JSON: {error}') from error
  for keys in _JSON_KEYS:
    if isinstance(content, dict) and all(key in content for key in keys):
      lists = [content[key] for key in keys]
      if not all(
          isinstance(names, list) and all(isinstance(n, str) for n in names) for names in lists
      ):
        raise ConversionError(f'{path}: {list(keys)} must be lists of strings.')
      return ClassNames(main=tuple(lists[0]), sub=tuple(lists[1]), source=path)
  raise ConversionError(
      f'{path}: expected a JSON object with keys {list(_JSON_KEYS[0])} (or '
      f'{list(_JSON_KEYS[1])}), lists of class names in class-id order.'
  )


def make_class_mapping(
    class_names: str | ClassNames,
    release_class_order: Optional[str | ClassNames] = None,
    release_rows: Optional[Mapping[str, int]] = None,
) -> ClassMapping:
  """A ``ClassMapping`` from a dataset's names (a path for ``read_class_names``, or
  ``ClassNames``) and the release's (default: the shipped template, 48 / 122 rows)."""
  dataset = class_names if isinstance(class_names, ClassNames) else read_class_names(class_names)
  release = (
      release_class_order
      if isinstance(release_class_order, ClassNames)
      else read_release_class_order(release_class_order)
  )
  return ClassMapping(
      release=release, dataset=dataset, release_rows=dict(release_rows or RELEASE_HEAD_ROWS)
  )


def _partners(names_from: Sequence[str], names_to: Sequence[Optional[str]]) -> list[Optional[int]]:
  """For each of ``names_to`` (None: unnamed), its index in ``names_from``, or None."""
  index = {normalize_class_name(name): i for i, name in enumerate(names_from)}
  return [None if name is None else index.get(normalize_class_name(name)) for name in names_to]


def _row_params(state: Mapping[str, Any], head: str) -> list[str]:
  return [f'{head}.{leaf}' for leaf in CLASS_ROW_PARAMS if f'{head}.{leaf}' in state]


def _head_rows(state: Mapping[str, Any], names: Sequence[str], where: str) -> int:
  rows = {int(state[name].shape[0]) for name in names}
  if len(rows) != 1:
    raise ConversionError(
        f'{where}: the class rows of {names} differ in number: '
        f'{[tuple(state[n].shape) for n in names]}.'
    )
  return rows.pop()


def _label(index: int, names: Sequence[str]) -> str:
  return f'{index} {names[index]}' if index < len(names) else f'{index} (unnamed)'


def map_class_rows_from_release(
    state: Mapping[str, np.ndarray], mapping: Optional[ClassMapping], model_rows: Mapping[str, int]
) -> tuple[dict[str, np.ndarray], dict[str, list[int]], list[str]]:
  """Recognition rows of a PyTorch (release-order) state dict -> the dataset's order.

  Args:
    state: PyTorch names -> numpy arrays in PyTorch layout (class axis first).
    mapping: the two class orders; None copies the rows as they are (and warns).
    model_rows: rows of the JAX model's heads per level (``main``/``sub``) that it has.

  Returns:
    The state with every head's ``linear.weight``, ``linear.bias`` and ``linear_bias``
    reordered (dataset row j = the release row of the same name), the dataset rows without
    a release row (per PyTorch name; the caller fills them from the JAX init), and notes
    that list what had no partner: those dataset classes, and the release rows dropped
    (release classes the dataset lacks, rows without a name).
  """
  out, fill, notes = dict(state), {}, []
  levels = [
      level
      for level in CLASS_LEVELS
      if level in model_rows and _row_params(state, CLASS_HEADS[level])
  ]
  if not levels:
    return out, fill, notes
  if mapping is None:
    return out, fill, [NO_CLASS_NAMES_WARNING]
  for level in levels:
    head = CLASS_HEADS[level]
    names = _row_params(state, head)
    file_rows = _head_rows(state, names, 'file')
    release_names = mapping.release.of(level)
    dataset_names = mapping.dataset.of(level)
    if file_rows < len(release_names):
      raise ConversionError(
          f'{head} has {file_rows} rows but {mapping.release.source} names '
          f"{len(release_names)} {level} classes: not that release's order."
      )
    if len(dataset_names) != model_rows[level]:
      raise ConversionError(
          f'{mapping.dataset.source} lists {len(dataset_names)} {level} '
          f"classes but the model's {head} has {model_rows[level]} outputs "
          f'(config.model.num_{level}_classes).'
      )
    partners = _partners(release_names, dataset_names)  # dataset row j <- release row
    for name in names:
      array = np.asarray(state[name])
      rows = np.zeros((len(dataset_names),) + array.shape[1:], array.dtype)
      for j, i in enumerate(partners):
        if i is not None:
          rows[j] = array[i]
      out[name] = rows
    fresh = [j for j, i in enumerate(partners) if i is None]
    for name in names:
      if fresh:
        fill[name] = fresh
    used = set(partners)
    dropped = [_label(i, release_names) for i in range(file_rows) if i not in used]
    notes.append(
        f'{level} classes ({head}): {len(dataset_names) - len(fresh)} of the '
        f'{len(dataset_names)} of {mapping.dataset.source} mapped by name from the '
        f'{file_rows} release rows ({mapping.release.source}).'
    )
    if fresh:
      notes.append(
          f'  {level} classes the release does not know (fresh init): '
          + ', '.join(dataset_names[j] for j in fresh)
      )
    if dropped:
      notes.append(
          f'  {level} release rows without a dataset class (dropped): ' + ', '.join(dropped)
      )
  return out, fill, notes


def _fresh_release_heads(
    widths: Mapping[str, int], rows: Mapping[str, int], seed: int
) -> dict[str, dict[str, np.ndarray]]:
  """The PyTorch port's fresh init of each level's head (``torch_port.ClassifierHead``
  with the release's ``_init_weights``): ``{level: {leaf: array}}``; reproducible by ``seed``."""
  torch = _import_torch()
  from mvlt_jax import torch_port  # pylint: disable=import-outside-toplevel

  heads = {}
  with torch.random.fork_rng(devices=[]):
    torch.manual_seed(seed)
    for level in CLASS_LEVELS:
      if level in widths:
        head = torch_port.ClassifierHead(widths[level], rows[level])
        head.apply(torch_port.init_weights_)
        heads[level] = {
            leaf: value.detach().numpy().astype(np.float32)
            for leaf, value in head.state_dict().items()
        }
  return heads


def map_class_rows_to_release(
    state: Mapping[str, np.ndarray], mapping: Optional[ClassMapping], *, seed: int = 0
) -> tuple[dict[str, np.ndarray], list[str]]:
  """Recognition rows of an exported state dict (dataset order) -> the release's order.

  The PyTorch heads get ``mapping.release_rows`` rows: release row i = the dataset row of the
  same name; release rows whose name the dataset lacks, and the unnamed rows (the sub head's
  row 121), get the PyTorch port's fresh init (``seed``). Dataset classes the release does
  not know have no row there and are dropped. All of it is listed in the notes. ``mapping``
  None copies the rows as they are (and warns).
  """
  out, notes = dict(state), []
  levels = [level for level in CLASS_LEVELS if _row_params(state, CLASS_HEADS[level])]
  if not levels:
    return out, notes
  if mapping is None:
    return out, [NO_CLASS_NAMES_WARNING]
  widths = {}
  for level in levels:
    head = CLASS_HEADS[level]
    rows = _head_rows(state, _row_params(state, head), 'model')
    if rows != len(mapping.dataset.of(level)):
      raise ConversionError(
          f'{mapping.dataset.source} lists {len(mapping.dataset.of(level))} '
          f"{level} classes but the model's {head} has {rows} outputs."
      )
    weight = state.get(f'{head}.linear.weight')
    if weight is None:
      raise ConversionError(f'{head}.linear.weight is missing; cannot map a partial head.')
    widths[level] = int(weight.shape[1])
  fresh_heads = _fresh_release_heads(widths, mapping.release_rows, seed)
  for level in levels:
    head = CLASS_HEADS[level]
    release_names = mapping.release.of(level)
    dataset_names = mapping.dataset.of(level)
    num_rows = mapping.release_rows[level]
    slots = list(release_names) + [None] * (num_rows - len(release_names))
    partners = _partners(dataset_names, slots)  # release row i <- dataset row
    for name in _row_params(state, head):
      rows = fresh_heads[level][name[len(head) + 1 :]].copy()
      for i, j in enumerate(partners):
        if j is not None:
          rows[i] = state[name][j]
      out[name] = rows
    fresh = [_label(i, release_names) for i, j in enumerate(partners) if j is None]
    used = set(partners)
    dropped = [name for j, name in enumerate(dataset_names) if j not in used]
    notes.append(
        f'{level} classes ({head}): {num_rows - len(fresh)} of the {num_rows} release '
        f'rows ({mapping.release.source}) mapped by name from the '
        f'{len(dataset_names)} of {mapping.dataset.source}.'
    )
    if fresh:
      notes.append(
          f"  {level} release rows without a dataset class (the port's fresh init, "
          f'seed {seed}): ' + ', '.join(fresh)
      )
    if dropped:
      notes.append(
          f'  {level} dataset classes the release does not know (dropped): ' + ', '.join(dropped)
      )
  return out, notes


# ---------------------------------------------------------------------------------------
# Files: PyTorch side.
# ---------------------------------------------------------------------------------------


def _import_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ConversionError(
        'PyTorch is needed to read or write PyTorch checkpoints: '
        'pip install torch==2.13.0 (CPU build is enough; see '
        'requirements-test.txt).'
    ) from error
  return torch


def load_torch_state_dict(path: str) -> dict[str, Any]:
  """A state dict from ``.pth`` (``{'model': sd}`` of the release, or a bare ``sd``) or
  ``.safetensors``. A ``module.`` prefix on every key (DistributedDataParallel) is removed.

  Raises:
    ConversionError: one line naming ``path`` and why it cannot be read (no such file, empty,
      truncated, damaged, the other format, an object that ``weights_only`` refuses ...).
  """
  if not os.path.isfile(path):
    raise ConversionError(f'{path}: no such file.')
  if path.endswith('.safetensors'):
    try:
      from safetensors.torch import load_file  # pylint: disable=import-outside-toplevel
    except ImportError as error:
      raise ConversionError(
          f'{path}: reading safetensors needs the safetensors package '
          '(pip install safetensors==0.8.0).'
      ) from error
    try:
      state = load_file(path)
    except Exception as error:  # SafetensorError, OSError ...  pylint: disable=broad-except
      raise ConversionError(
          f'{path}: cannot be read as a safetensors file: {_safetensors_problem(path, error)}.'
      ) from error
  else:
    torch = _import_torch()
    # Release checkpoints also pickle their argparse arguments; allow that one plain class.
    torch.serialization.add_safe_globals([argparse.Namespace])
    try:
      state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError ...
      raise ConversionError(
          f'{path}: cannot be read as a PyTorch checkpoint (torch.load, weights_only=True): '
          f'{_torch_file_problem(path, error)}.'
      ) from error
  if isinstance(state, Mapping) and isinstance(state.get('model'), Mapping):
    state = state['model']
  if not isinstance(state, Mapping) or not state:
    raise ConversionError(
        f'{path}: holds neither a state dict nor {{"model": state_dict}} '
        f'(got {type(state).__name__}).'
    )
  bad = [
      name
      for name, value in state.items()
      if not isinstance(name, str) or not hasattr(value, 'shape')
  ]
  if bad:
    raise ConversionError(f'{path}: entries that are not named tensors: {bad[:10]}.')
  if all(name.startswith('module.') for name in state):
    state = {name[len('module.') :]: value for name, value in state.items()}
  return dict(state)


# What a file's first bytes say it is (``_file_format``), in words.
_FORMAT_NAMES = {
    'zip': "a PyTorch checkpoint (torch.save's zip archive)",
    'pickle': 'a PyTorch checkpoint (a legacy torch.save pickle)',
    'safetensors': 'a safetensors file',
}
_MAX_REASON_CHARS = 300


def _file_format(path: str) -> str:
  """``empty``, ``zip`` (torch.save), ``pickle`` (legacy torch.save), ``safetensors`` (an
  8-byte header length, then the JSON header's ``{``) or ``unknown``, from the first bytes."""
  with open(path, 'rb') as f:
    head = f.read(9)
  if not head:
    return 'empty'
  if head.startswith(b'PK\x03\x04'):
    return 'zip'
  if head.startswith(b'\x80') and len(head) > 1 and 2 <= head[1] <= 5:
    return 'pickle'
  if len(head) == 9 and head[8:9] == b'{':
    return 'safetensors'
  return 'unknown'


def _error_reason(error: BaseException) -> str:
  """An exception as a short one-line reason: its type and first line."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  text = lines[0] if lines else ''
  text = ' '.join(text.split()).rstrip('.')
  if len(text) > _MAX_REASON_CHARS:
    text = text[: _MAX_REASON_CHARS - 3] + '...'
  return f'{type(error).__name__}: {text}' if text else type(error).__name__


def _safetensors_problem(path: str, error: BaseException) -> str:
  """Why ``path`` is not a readable safetensors file (``error``: what the reader raised)."""
  try:
    size = os.path.getsize(path)
    kind = _file_format(path)
    if kind == 'empty':
      return 'the file is empty (0 bytes)'
    if kind in ('zip', 'pickle'):
      return f'it is {_FORMAT_NAMES[kind]}, not safetensors (name it .pth)'
    if size < 8:
      return f'truncated: {size} bytes, less than the 8-byte header length'
    with open(path, 'rb') as f:
      header_size = int.from_bytes(f.read(8), 'little')
      if kind != 'safetensors':
        return (
            'not a safetensors file (no JSON header after the 8-byte length; the reader says '
            f'{_error_reason(error)})'
        )
      if 8 + header_size > size:
        return (
            f'truncated: its header is {header_size} bytes long but the file has '
            f'{size - 8} after the header length'
        )
      try:
        header = json.loads(f.read(header_size))
      except ValueError as json_error:
        return f'its header is not valid JSON ({_error_reason(json_error)})'
    offsets = [
        entry.get('data_offsets', (0, 0))[1]
        for name, entry in (header.items() if isinstance(header, dict) else ())
        if name != '__metadata__' and isinstance(entry, dict)
    ]
    data = size - 8 - header_size
    if offsets and all(isinstance(end, int) for end in offsets) and max(offsets) > data:
      return (
          f'truncated: its header describes {max(offsets)} bytes of tensor data, the file '
          f'holds {data}'
      )
  except OSError as os_error:
    return _error_reason(os_error)
  return f'damaged ({_error_reason(error)})'


def _torch_file_problem(path: str, error: BaseException) -> str:
  """Why ``torch.load`` could not read ``path`` (``error``: what it raised), in one line."""
  try:
    kind = _file_format(path)
  except OSError as os_error:
    return _error_reason(os_error)
  if kind == 'empty':
    return 'the file is empty (0 bytes)'
  if kind == 'safetensors':
    return 'it is a safetensors file, not a .pth (name it .safetensors)'
  if kind == 'unknown':
    return 'not a PyTorch checkpoint (neither a zip archive nor a pickle)'
  if kind == 'zip':
    import zipfile  # pylint: disable=import-outside-toplevel

    try:
      with zipfile.ZipFile(path) as archive:
        damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as zip_error:
      return f'truncated or damaged: its zip archive cannot be opened ({_error_reason(zip_error)})'
    if damaged is not None:
      return f"damaged: the zip archive's entry {damaged} fails its checksum"
  message = str(error)
  refused = re.search(r'Unsupported global: GLOBAL ([\w.]+)', message)
  if refused:
    return (
        f'it pickles a {refused.group(1)} object, which weights_only=True does not load (only '
        'tensors, plain containers and argparse.Namespace); save the state dict alone'
    )
  if (
      kind == 'pickle'
      and isinstance(error, (EOFError, RuntimeError))
      and 'EOF' in (type(error).__name__ + message)
  ):
    return f'truncated ({_error_reason(error)})'
  return _error_reason(error)


def save_torch_state_dict(state_dict: Mapping[str, Any], path: str) -> None:
  """Writes ``.safetensors`` (flat) or ``.pth`` (``{'model': state_dict}``, as the release)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  if path.endswith('.safetensors'):
    from safetensors.torch import save_file  # pylint: disable=import-outside-toplevel

    save_file({name: value.contiguous() for name, value in state_dict.items()}, path)
  else:
    _import_torch().save({'model': dict(state_dict)}, path)


# ---------------------------------------------------------------------------------------
# Files: JAX side, in the layout of ``mvlt_jax/checkpoint.py``.
# ---------------------------------------------------------------------------------------


def save_converted_checkpoint(
    variables: Mapping[str, Any], config: Any, path: str, step: int = 0
) -> str:
  """Writes a variables-only checkpoint that training (``init_from``) and evaluation read.

  Layout (``mvlt_jax.checkpoint.save_variables``): ``PATH/config.json`` (the full config)
  and ``PATH/<step>/state`` (orbax ``StandardSave`` of ``{'params', 'batch_stats'}``).
  Returns the step directory.
  """
  from mvlt_jax import checkpoint  # pylint: disable=import-outside-toplevel

  _check_no_checkpoint_at(path, step)
  tree = jax.tree.map(np.asarray, dict(variables))
  return checkpoint.save_variables(path, tree, config, step=step)


def _check_no_checkpoint_at(path: str, step: int = 0) -> None:
  """Conversion never writes over a checkpoint."""
  if os.path.exists(os.path.join(path, str(step))):
    raise ConversionError(
        f'{path} already holds a checkpoint at step {step}; choose a new --out directory.'
    )


def load_checkpoint_variables(path: str, step: Optional[int] = None) -> Variables:
  """``{'params', 'batch_stats'}`` (numpy) of a training or converted checkpoint.

  ``path`` is a checkpoint directory (its latest step, or ``step``) or a step directory.
  """
  from mvlt_jax import checkpoint  # pylint: disable=import-outside-toplevel

  try:
    opened = checkpoint.open(path, step, require_config=False, load_tokenizer=False)
  except checkpoint.CheckpointNotFoundError as error:
    raise ConversionError(str(error)) from error
  return jax.tree.map(np.asarray, jax.device_get(opened.variables))


def load_checkpoint_config(path: str) -> Optional[Any]:
  """The ``config.json`` of a checkpoint (directory or step directory), or None."""
  from mvlt_jax import checkpoint  # pylint: disable=import-outside-toplevel

  for directory in (path, os.path.dirname(os.path.abspath(path))):
    if os.path.isfile(os.path.join(directory, checkpoint.CONFIG_FILE)):
      return checkpoint.read_config(directory)
  return None


# ---------------------------------------------------------------------------------------
# Initialisation from a file: training's ``init_from``.
# ---------------------------------------------------------------------------------------

# Files ``load_init_variables`` converts on the fly; anything else is a checkpoint directory.
TORCH_FILE_SUFFIXES = ('.pth', '.pt', '.bin', '.safetensors')
# Groups that an MVLT state dict may lack / have in excess when it initialises training: the
# heads (as training's orbax ``init_from`` does: new heads start fresh, others' are unused).
INIT_FROM_ALLOWED_GROUPS = ('heads',)
_SOURCE_DESCRIPTIONS = {'pvt': 'PVT-v1 ImageNet classifier', 'mvlt': 'MVLT state dict'}


def load_init_variables(
    path: str,
    model_config: Any,
    *,
    class_mapping: Optional[ClassMapping] = None,
    source: str = 'auto',
    allow_missing: Iterable[str] | str = INIT_FROM_ALLOWED_GROUPS,
    allow_unexpected: Iterable[str] | str = INIT_FROM_ALLOWED_GROUPS,
    seed: int = 0,
    allow_nonfinite: bool = False,
) -> tuple[Variables, str]:
  """The variables that ``path`` holds for a model of ``model_config``, and a one-line description.

  ``path`` is either
  * a PyTorch / safetensors file (``.pth``, ``.pt``, ``.bin``, ``.safetensors``): a release
    checkpoint, a bare state dict or PVT-v1 ImageNet weights (``pvt_tiny.pth``), converted
    on the fly as ``from-torch`` does (``import_state_dict``: same strictness and messages,
    position embeddings resized to the configured grid, a PVT classifier's ``norm`` /
    ``cls_token`` / ``head`` ignored). Only what the file holds is returned: a PVT file gives
    the vision path (``pos_embed*``, ``patch_embed*``, ``block*``) and nothing else; keys of
    the groups ``allow_missing`` that the file lacks are left out (the caller keeps its fresh
    init for them), keys of ``allow_unexpected`` without a place in the model are ignored;
    anything else missing, unexpected or mis-shaped is an error. A module of the model
    that the file holds only in part is an error too. Needs PyTorch (imported only here).
  * anything else: a ``mvlt_jax`` checkpoint directory (or step directory), read with
    ``mvlt_jax.checkpoint.load_variables`` (its latest step), returned as saved.

  Args:
    path: the file or directory (training's ``config.init_from``).
    model_config: ``config.model`` (or the full config) of the model to initialise; its
      class counts must be resolved (not 0).
    class_mapping: for a file with recognition heads: map their rows by class name
      (``make_class_mapping``); None copies them as they are and the description warns.
    source, allow_missing, allow_unexpected, seed, allow_nonfinite: as
      ``import_state_dict`` (``seed`` only for dataset classes that the release does not
      know, with ``class_mapping``; NaN / Inf in the file are an error by default).

  Returns:
    ``({'params': ..., 'batch_stats': ...}, description)``: nested dicts of arrays in the
    JAX model's layout (numpy for a converted file; ``batch_stats`` is ``{}`` when the
    source has none) and one line saying what was loaded, ignored, resized and left out.

  Raises:
    ConversionError (an ``MVLTError``): naming ``path`` and the reason.
  """
  if os.path.isdir(path) or not path.endswith(TORCH_FILE_SUFFIXES):
    if os.path.isfile(path):
      raise ConversionError(
          f'init_from: {path} is a file but not a PyTorch or safetensors file '
          f'({", ".join(TORCH_FILE_SUFFIXES)}); a mvlt_jax checkpoint is a '
          'directory.'
      )
    from mvlt_jax import checkpoint  # pylint: disable=import-outside-toplevel

    try:
      opened = checkpoint.open(path, require_config=False, load_tokenizer=False)
    except checkpoint.CheckpointNotFoundError as error:
      raise ConversionError(f'init_from: {error}') from error
    return opened.variables, f'{path}: mvlt_jax checkpoint, step {opened.step}'

  state_dict = load_torch_state_dict(path)
  model_config = _model_config_of(model_config)
  try:
    variables, report = import_state_dict(
        state_dict,
        _build_model(model_config),
        model_config,
        allow_missing=allow_missing,
        allow_unexpected=allow_unexpected,
        source=source,
        class_mapping=class_mapping,
        seed=seed,
        fill_missing=False,
        allow_nonfinite=allow_nonfinite,
    )
  except ConversionError as error:
    raise ConversionError(f'{path}: {error}') from error
  flat = _flatten(variables)
  loaded_modules = {flat_key[:2] for flat_key in flat}
  partial = sorted(
      name for name in report.left_out if _module_of_torch_name(name) in loaded_modules
  )
  if partial:
    raise ConversionError(
        f'{path}: holds only part of some modules of the model:\n'
        + _list_names('missing', partial)
        + '\n  (a module is loaded whole or not at all)'
    )
  variables = {
      'params': variables.get('params', {}),
      'batch_stats': variables.get('batch_stats', {}),
  }
  logging.info('init_from %s: %s', path, report.summary())
  return variables, _describe_import(path, report)


def _module_of_torch_name(name: str) -> tuple[str, str]:
  """(collection, top-level module) of a PyTorch key, as in the flax variables."""
  collection = 'batch_stats' if name.rsplit('.', 1)[-1] in _BATCH_STATS_LEAVES else 'params'
  return collection, name.split('.', 1)[0]


def _describe_import(path: str, report: ImportReport) -> str:
  """One line: what ``import_state_dict`` loaded from ``path`` and what it did not."""

  def groups_of(names):
    groups = set().union(*(key_groups(name) for name in names)) if names else set()
    return ', '.join(g for g in ('vision', 'text') + _HEAD_GROUPS + ('batch_stats',) if g in groups)

  parts = [
      f'{path} ({_SOURCE_DESCRIPTIONS.get(report.source, report.source)}): '
      f'{len(report.loaded)} tensors loaded ({groups_of(report.loaded)})'
  ]
  if report.ignored:
    parts.append('ignored: ' + _summarise_names(report.ignored))
  if report.resized:
    parts.append(f'{len(report.resized)} position embeddings resized')
  if report.left_out:
    parts.append('not in the file (keep the fresh init): ' + groups_of(report.left_out))
  if NO_CLASS_NAMES_WARNING in report.notes:
    parts.append(
        "WARNING: recognition rows copied in the release's class order (no class " 'names given)'
    )
  elif any(
      note.startswith(tuple(f'{level} classes' for level in CLASS_LEVELS)) for note in report.notes
  ):
    parts.append('recognition rows mapped by class name')
  parts += [note for note in report.notes if note.startswith(_NONFINITE_IMPORT_WARNING)]
  return '; '.join(parts)


# ---------------------------------------------------------------------------------------
# Configs and the command line.
# ---------------------------------------------------------------------------------------


def load_config(spec: str, overrides: Sequence[str] = ()) -> Any:
  """``configs/X.py`` (or ``configs/X.py:ARG``) -> ``get_config()``, with overrides applied.

  ``overrides`` are ``--config.a.b=value`` strings, parsed as ``main.py`` and the command
  line parse them (``ml_collections.config_flags``: each value by its field's type, e.g.
  ``16``, ``float32``, ``"('mlm', 'itm')"`` for a tuple). Raises ``ConversionError``.
  """
  argv = [_PROGRAM, f'--config={spec}', *overrides]
  flag_values = flags.FlagValues()
  _define_config_flag(flag_values, argv, lock_config=False)
  extra = _parse_flags(flag_values, argv)
  if extra:
    raise ConversionError(f'Cannot parse override(s) {extra}; use --config.a.b=value.')
  return flag_values.config


def _build_model(config: Any) -> Any:
  from mvlt_jax.models import build_model  # pylint: disable=import-outside-toplevel

  model_config = _model_config_of(config)
  heads = tuple(model_config.get('heads', ()))
  unknown = sorted(set(heads) - set(HEAD_NAMES))
  if unknown:
    raise ConversionError(f'config.model.heads: unknown heads {unknown}; known: {HEAD_NAMES}.')
  if 'attributes' in heads and not model_config.get('attribute_classes'):
    raise ConversionError(
        "config.model.heads has 'attributes' but config.model."
        'attribute_classes is empty (training takes it from the dataset); '
        'give it, e.g. --config.model.attribute_classes="(16, 6)".'
    )
  # Sizes that a config such as configs/demo.py leaves at 0 ("from the data"; a trained
  # checkpoint's config.json has them resolved): a model built with them has empty tables.
  unresolved = ['vocab_size'] if not model_config.get('vocab_size') else []
  if 'recognition' in heads:
    unresolved += [
        f'num_{level}_classes'
        for level in CLASS_LEVELS
        if not model_config.get(f'num_{level}_classes')
    ]
  if unresolved:
    raise ConversionError(
        f'config.model.{", ".join(unresolved)}: 0 ("from the data": training takes the '
        'vocabulary from the tokenizer and the class counts from the dataset); give '
        + ', '.join(f'--config.model.{field}=N' for field in unresolved)
        + (' (or --class_names=PATH for the class counts)' if unresolved != ['vocab_size'] else '')
        + ', or export a trained checkpoint (its config.json has them).'
    )
  return build_model(model_config)


# The command line: ``python -m mvlt_jax.convert COMMAND --flag=value ...`` (absl flags and
# ``ml_collections.config_flags``, as main.py). The flags live on a FlagValues of their own per
# call, not on absl's global FLAGS: this module is also a library that training imports, and
# main.py defines its own --config there.
_PROGRAM = 'python -m mvlt_jax.convert'
# The flags of each command (both take --config).
_COMMAND_FLAGS = {
    'to-torch': (
        'checkpoint',
        'init',
        'out',
        'seed',
        'class_names',
        'release_class_order',
        'allow_nonfinite',
    ),
    'from-torch': (
        'torch',
        'out',
        'source',
        'allow_missing',
        'allow_unexpected',
        'allow_untied_decoder',
        'seed',
        'class_names',
        'release_class_order',
        'allow_nonfinite',
    ),
}
COMMANDS = tuple(_COMMAND_FLAGS)
_USAGE = f"""usage: {_PROGRAM} to-torch (--checkpoint=DIR | --init --config=FILE) --out=FILE
           [--config=FILE [--config.a.b=value ...]] [--class_names=PATH] [--seed=N]
           [--allow_nonfinite]
       {_PROGRAM} from-torch --torch=FILE --config=FILE [--config.a.b=value ...]
           --out=DIR [--source=auto|mvlt|pvt] [--allow_missing=GROUP,...]
           [--allow_unexpected=GROUP,...] [--allow_untied_decoder] [--class_names=PATH]
           [--allow_nonfinite]

Converts MVLT weights between PyTorch (the public release, PVT-v1) and mvlt_jax
(docs/convert.md).
  to-torch    a mvlt_jax checkpoint (--checkpoint) or a fresh init of --config (--init)
              -> a PyTorch state dict with the release's names (--out: .pth, .safetensors)
  from-torch  a PyTorch state dict (--torch) -> a mvlt_jax checkpoint directory (--out)
Config fields are overridden after --config, as in main.py: --config.model.variant=pvlt_small.
"""


def _define_config_flag(
    flag_values: flags.FlagValues, argv: Sequence[str], lock_config: bool = True
) -> None:
  """``--config`` and its ``--config.a.b=value`` overrides (found in ``argv``)."""
  config_flags.DEFINE_config_file(
      'config',
      None,
      'A configs/*.py file (configs/X.py:ARG passes ARG to get_config); its '
      'fields are overridden after it: --config.model.variant=pvlt_small. from-torch: '
      'required. to-torch: needed by --init; with --checkpoint, default the config.json '
      'beside the checkpoint.',
      flag_values=flag_values,
      lock_config=lock_config,
      sys_argv=list(argv),
  )


def _define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
  """The command line's flags on ``flag_values``; ``argv``: the whole command line."""
  f = dict(flag_values=flag_values)
  flags.DEFINE_string(
      'checkpoint',
      None,
      'to-torch: a mvlt_jax checkpoint directory (its ' 'latest step) or a step directory.',
      **f,
  )
  flags.DEFINE_boolean(
      'init',
      False,
      'to-torch: export a freshly initialised model of '
      '--config (its own initialisers, --seed) instead of --checkpoint.',
      **f,
  )
  flags.DEFINE_string(
      'torch',
      None,
      'from-torch: the PyTorch file (FILE.pth: a release '
      'checkpoint or a bare state dict; FILE.safetensors).',
      **f,
  )
  flags.DEFINE_string(
      'out',
      None,
      'to-torch: FILE.pth ({"model": state_dict}, as the '
      'release) or FILE.safetensors. from-torch: a new checkpoint directory.',
      **f,
  )
  flags.DEFINE_enum(
      'source',
      'auto',
      SOURCES,
      'from-torch: mvlt (a release state dict), pvt '
      '(PVT-v1 ImageNet weights: the vision path) or auto (detected).',
      **f,
  )
  flags.DEFINE_string(
      'allow_missing',
      '',
      'from-torch: groups whose keys may be absent from '
      f'the file (they keep the JAX init), comma-separated: {", ".join(GROUPS)}.',
      **f,
  )
  flags.DEFINE_string(
      'allow_unexpected',
      '',
      'from-torch: groups whose keys without a place ' 'in the model are ignored, comma-separated.',
      **f,
  )
  flags.DEFINE_boolean(
      'allow_untied_decoder',
      False,
      'from-torch: keep the word embedding '
      'when the MLM decoder differs from it (else an error).',
      **f,
  )
  flags.DEFINE_boolean(
      'allow_nonfinite',
      False,
      'Convert weights that hold NaN or Inf as they are, with a warning naming them (by '
      'default both commands refuse them, naming them).',
      **f,
  )
  flags.DEFINE_integer(
      'seed',
      0,
      'Seed of the JAX init (--init, keys kept from the init) '
      'and of release rows without a dataset class.',
      **f,
  )
  flags.DEFINE_string(
      'class_names',
      '',
      "The JAX side's recognition classes: a prepared "
      'dataset directory or a JSON file {"main": [...], "sub": [...]}; the '
      "heads' rows are then mapped by class name to and from the release's "
      'order. Without it rows are copied as they are (with a warning).',
      **f,
  )
  flags.DEFINE_string(
      'release_class_order',
      RELEASE_CLASS_ORDER_FILE,
      "The release's class " 'template (default: the copy shipped with mvlt_jax).',
      **f,
  )
  _define_config_flag(flag_values, argv)


def _one_line(message: str, first_and_last: bool = True) -> str:
  """A possibly multi-line message (a traceback inside) as one line."""
  lines = [line.strip() for line in str(message).splitlines() if line.strip()]
  if not lines:
    return ''
  if len(lines) == 1 or not first_and_last:
    return lines[-1]
  return f'{lines[0]} {lines[-1]}'


def _parse_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> list[str]:
  """Parses ``argv`` (the program first) into ``flag_values``; returns the positional
  arguments. Every problem, the config file's own included, is one ``ConversionError``."""
  argv = list(argv)
  try:
    positional = flag_values(argv)[1:]
    if flag_values['config'].value is not None:
      # A config file that failed to load (no such file ...) raises its error on any access.
      getattr(flag_values['config'].value, 'keys', None)
  except flags.Error as error:
    message = _one_line(str(error))
    if 'config.' in message:
      message += ' (config overrides come after the file: --config=FILE ' '--config.a.b=value)'
    raise ConversionError(message) from error
  except (AttributeError, KeyError) as error:  # an override of a field that the config lacks
    field = str(error).strip('\'"')
    named = [
        arg.split('=', 1)[0]
        for arg in argv
        if re.match(r'--?config\.', arg) and field in arg.split('=', 1)[0].split('.')
    ]
    if not named:
      raise ConversionError(f'--config: {type(error).__name__}: {_one_line(str(error))}') from error
    raise ConversionError(f'{named[0]}: the config has no field {field!r}.') from error
  except Exception as error:  # pylint: disable=broad-except
    # Loading a config file runs it: its errors (no such file, bad syntax ...) end here.
    raise ConversionError(
        f'--config: {type(error).__name__}: ' f'{_one_line(str(error), first_and_last=False)}'
    ) from error
  return positional


def _command_of(positional: Sequence[str], options: flags.FlagValues) -> str:
  """The command word, with its flags checked: the other command's are errors."""
  if not positional:
    raise ConversionError(
        f'no command given: {_PROGRAM} to-torch|from-torch --flag=value ... '
        '(--help lists the flags).'
    )
  command, *extra = positional
  if command not in COMMANDS:
    raise ConversionError(f'unknown command {command!r}; choose one of {", ".join(COMMANDS)}.')
  if extra:
    raise ConversionError(f'unexpected arguments {extra} (flags are --name=value).')
  foreign = [
      f'--{name}'
      for other, names in _COMMAND_FLAGS.items()
      if other != command
      for name in names
      if name not in _COMMAND_FLAGS[command] and options[name].present
  ]
  if foreign:
    raise ConversionError(f'{", ".join(foreign)}: not a flag of {command}.')
  if command == 'to-torch':
    if bool(options.checkpoint) == options.init:
      raise ConversionError('to-torch takes either --checkpoint=DIR or --init (with --config).')
    required = ['out']
  else:
    required = ['torch', 'config', 'out']
  missing = [f'--{name}' for name in required if not options[name].value]
  if missing:
    raise ConversionError(f'{command} needs {", ".join(missing)}.')
  return command


def _class_mapping_of(options: flags.FlagValues, config: Optional[Any]) -> Optional[ClassMapping]:
  """The mapping of ``--class_names``; it also fills the config's class counts left at 0
  ("from the dataset", as training resolves them)."""
  if not options.class_names:
    return None
  mapping = make_class_mapping(options.class_names, options.release_class_order)
  model_config = _model_config_of(config) if config is not None else None
  for level in CLASS_LEVELS:
    field = f'num_{level}_classes'
    if model_config is not None and model_config.get(field) == 0:
      model_config[field] = len(mapping.dataset.of(level))
  return mapping


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Command-line entry point; returns the exit status (errors print one clear message).

  ``argv``: the arguments after the program name (default ``sys.argv[1:]``), e.g.
  ``['to-torch', '--init', '--config=configs/pretrain.py', '--out=init.pth']``.
  """
  argv = [_PROGRAM, *(sys.argv[1:] if argv is None else argv)]
  options = flags.FlagValues()
  _define_flags(options, argv)
  if cli.help_requested(argv[1:]):
    print(cli.help_text(_USAGE, options))
    return 0
  try:
    command = _command_of(_parse_flags(options, argv), options)
    if command == 'to-torch':
      _run_to_torch(options)
    else:
      _run_from_torch(options)
  except MVLTError as error:  # ConversionError and the config/checkpoint errors
    print(f'error: {error}', file=sys.stderr)
    return 1
  return 0


def _run_to_torch(options: flags.FlagValues) -> None:
  # As from-torch, which never writes over a checkpoint: checked before any work.
  if os.path.lexists(options.out):
    raise ConversionError(
        f'{options.out} already exists; choose a new --out file (to-torch does not overwrite).'
    )
  config = options.config
  class_mapping = _class_mapping_of(options, config)
  if options.init:
    if config is None:
      raise ConversionError('--init needs --config.')
    variables = init_variables(_build_model(config), _model_config_of(config), options.seed)
  else:
    variables = load_checkpoint_variables(options.checkpoint)
    if config is None:
      config = load_checkpoint_config(options.checkpoint)
  try:
    arrays, notes = export_state_dict(
        variables,
        class_mapping=class_mapping,
        seed=options.seed,
        allow_nonfinite=options.allow_nonfinite,
    )
  except ConversionError as error:
    if options.checkpoint:
      raise ConversionError(f'{options.checkpoint}: {error}') from error
    raise
  torch = _import_torch()
  state_dict = {name: torch.from_numpy(array) for name, array in arrays.items()}
  if config is not None:
    check_against_port(state_dict, config, class_mapping)
  save_torch_state_dict(state_dict, options.out)
  for note in notes:
    print(note)
  print(f'wrote {len(state_dict)} tensors to {options.out}')


def _run_from_torch(options: flags.FlagValues) -> None:
  _check_no_checkpoint_at(options.out)  # before any work, as to-torch's --out
  config = options.config
  state_dict = load_torch_state_dict(options.torch)
  class_mapping = _class_mapping_of(options, config)
  try:
    variables, report = import_state_dict(
        state_dict,
        _build_model(config),
        _model_config_of(config),
        allow_missing=options.allow_missing,
        allow_unexpected=options.allow_unexpected,
        source=options.source,
        allow_untied_decoder=options.allow_untied_decoder,
        class_mapping=class_mapping,
        seed=options.seed,
        allow_nonfinite=options.allow_nonfinite,
    )
  except ConversionError as error:
    raise ConversionError(f'{options.torch}: {error}') from error
  save_converted_checkpoint(variables, config, options.out)
  print(report.summary())
  print(f'wrote {options.out}')


if __name__ == '__main__':
  sys.exit(main())
