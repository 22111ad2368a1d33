"""Weights in and out: PyTorch (the public MVLT release, PVT-v1) <-> ``mvlt_jax``.

Command line (see ``docs/convert.md``):

  # mvlt_jax checkpoint (or a fresh init) -> release-compatible PyTorch state dict
  python -m mvlt_jax.convert to-torch --checkpoint=PATH --out=model.pth
  python -m mvlt_jax.convert to-torch --init --config=configs/pretrain.py --out=init.safetensors
  # release checkpoint / bare state dict / PVT-v1 ImageNet weights -> mvlt_jax checkpoint
  python -m mvlt_jax.convert from-torch --torch=checkpoint_retrieval.pth \\
      --config=configs/pretrain.py --out=converted/

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
``*.num_batches_tracked`` of each BatchNorm (exported as 0, ignored on import: PyTorch only
reads it when ``momentum=None``, which the release does not use).

PyTorch is imported lazily: JAX-only users of ``mvlt_jax`` never need it.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import logging
import os
import re
import sys
from typing import Any, Iterable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from mvlt_jax.errors import MVLTError

Variables = dict[str, Any]  # {'params': ..., 'batch_stats': ...}
FlatKey = tuple[str, ...]   # ('params', 'block1', '0', 'attn', 'q', 'kernel')

TIED_DECODER_KEY = 'mlm_head.mlm_decoder.weight'
WORD_EMBEDDING_KEY = 'text_embeddings.word_embeddings.weight'
NUM_BATCHES_TRACKED = 'num_batches_tracked'

# Key groups, by the PyTorch name's top-level module. Used by ``allow_missing`` /
# ``allow_unexpected`` and in reports.
_GROUP_PATTERNS = {
    'vision': re.compile(r'(pos_embed\d+|patch_embed\d+|block\d+)(\.|$)'),
    'text': re.compile(r'(text_embeddings|text_embed\d+|text_pos_embed\d+)(\.|$)'),
    'mlm': re.compile(r'mlm_head(_embed)?(\.|$)'),
    'itm': re.compile(r'itm_head(_embed)?(\.|$)'),
    'mir': re.compile(r't2i_head(\.|$)'),
    'recognition': re.compile(r'(sup|sub)_cls_head(_embed)?(\.|$)'),
    # Not in the release: the demo's attribute heads (mvlt_jax/models/mvlt.py).
    'attributes': re.compile(r'(caption|image|imagecls)_attr\d+_head(_embed)?(\.|$)'),
    # PVT-v1 ImageNet classifier parts that MVLT does not have.
    'pvt_classifier': re.compile(r'(cls_token|norm|head)(\.|$)'),
}
_HEAD_GROUPS = ('mlm', 'itm', 'mir', 'recognition', 'attributes')
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
    raise ConversionError(f'Variable collection {collection!r} (at {"/".join(flat_key)}) has '
                          'no PyTorch counterpart; expected params and batch_stats only.')
  return '.'.join(module_path + [leaf])


def _kernel_permutation(flat_key: FlatKey, rank: int) -> Optional[tuple[int, ...]]:
  """Axis permutation JAX -> PyTorch of a leaf, or None when the layout is the same."""
  if flat_key[0] != 'params' or flat_key[-1] != 'kernel':
    return None
  if rank == 2:
    return (1, 0)  # Dense [in, out] -> Linear [out, in]
  if rank == 4:
    return (3, 2, 0, 1)  # Conv [kh, kw, in, out] -> Conv2d [out, in, kh, kw]
  raise ConversionError(f'Kernel {"/".join(flat_key)} has rank {rank}; only Dense (2) and '
                        'Conv2D (4) kernels have a PyTorch layout.')


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

def variables_to_numpy_state_dict(variables: Mapping[str, Any], *,
                                  num_batches_tracked: int = 0) -> dict[str, np.ndarray]:
  """flax variables -> ``{torch_name: float32 array in PyTorch layout}`` (the release's keys).

  Adds the tied ``mlm_head.mlm_decoder.weight`` (a copy of the word embedding) when the
  model has an MLM head, and ``num_batches_tracked`` (int64 scalar) for every BatchNorm.
  """
  state: dict[str, np.ndarray] = {}
  origin: dict[str, FlatKey] = {}
  for flat_key, value in _flatten(variables).items():
    name = torch_name(flat_key)
    if name in state:
      raise ConversionError(f'Variables {"/".join(origin[name])} and {"/".join(flat_key)} both '
                            f'map to the PyTorch name {name!r}.')
    origin[name] = flat_key
    array = np.asarray(jax.device_get(value), dtype=np.float32)
    state[name] = np.array(to_torch_layout(flat_key, array), order='C')  # an owned copy
    if flat_key[0] == 'batch_stats' and flat_key[-1] == 'mean':
      state[f'{_bn_module_of(name)}.{NUM_BATCHES_TRACKED}'] = np.array(num_batches_tracked,
                                                                      np.int64)
  if any(name.startswith('mlm_head.') for name in state):
    if WORD_EMBEDDING_KEY not in state:
      raise ConversionError(f'The MLM head needs {WORD_EMBEDDING_KEY} (its tied decoder).')
    state[TIED_DECODER_KEY] = state[WORD_EMBEDDING_KEY].copy()
  return state


def variables_to_torch_state_dict(variables: Mapping[str, Any], *,
                                  num_batches_tracked: int = 0) -> dict[str, Any]:
  """flax variables -> PyTorch state dict with exactly the release's keys and shapes.

  Load it with ``strict=True`` into ``mvlt_jax.torch_port.MVLT`` or the release's model of
  the same heads. The tied decoder is a separate tensor (equal values), so the result can
  also be written as safetensors.
  """
  torch = _import_torch()
  return {name: torch.from_numpy(array) for name, array in
          variables_to_numpy_state_dict(variables,
                                        num_batches_tracked=num_batches_tracked).items()}


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
  resized: list[str] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)

  def summary(self) -> str:
    lines = [f'source: {self.source}; {len(self.loaded)} tensors loaded, '
             f'{len(self.filled_from_init)} kept from the JAX init, {len(self.ignored)} ignored.']
    if self.filled_from_init:
      lines.append('kept from the JAX init: ' + _summarise_names(self.filled_from_init))
    if self.ignored:
      lines.append('ignored: ' + _summarise_names(self.ignored))
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
  return '\n'.join([f'  {title} ({len(entries)}):'] + [f'    {e}' for e in shown]
                   + ([f'    ... and {more} more'] if more > 0 else []))


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


def _example_inputs(model_config: Any) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
  """Abstract batch-of-one inputs of the configured size (variable shapes don't depend on it)."""
  size = int(model_config.get('image_size', 256))
  length = int(model_config.get('text_length', 128))
  return (jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32),
          jax.ShapeDtypeStruct((1, length), jnp.int32))


def abstract_variables(model: Any, model_config: Any) -> Variables:
  """Shapes and dtypes of ``model``'s variables (``jax.eval_shape``, no computation)."""
  images, input_ids = _example_inputs(_model_config_of(model_config))
  return jax.eval_shape(
      lambda rng: model.init(rng, jnp.zeros(images.shape), jnp.zeros(input_ids.shape, jnp.int32),
                             train=False), jax.random.PRNGKey(0))


def init_variables(model: Any, model_config: Any, seed: int = 0) -> Variables:
  """Fresh variables of ``model`` (its own initialisers) for ``seed``, as numpy arrays.

  Compiled with XLA's backend optimisations off: the init runs once, and this cuts its
  compile time on CPU by more than half.
  """
  images, input_ids = _example_inputs(_model_config_of(model_config))
  init = lambda rng: model.init(rng, jnp.zeros(images.shape), jnp.zeros(input_ids.shape,
                                                                         jnp.int32), train=False)
  key = jax.random.PRNGKey(seed)
  compiled = jax.jit(init).lower(key).compile(
      compiler_options={'xla_backend_optimization_level': 0,
                        'xla_llvm_disable_expensive_passes': True})
  return jax.tree.map(np.asarray, jax.device_get(compiled(key)))


def _resize_pos_embed(array: np.ndarray, target_shape: tuple[int, ...]) -> Optional[np.ndarray]:
  """A visual position embedding [1, extra + g*g, D] resized to ``target_shape``, or None.

  Bilinear with half-pixel centres (PyTorch ``align_corners=False``, as the model resizes
  at run time); leading extra slots (stage 4's class-token slot) are kept as they are.
  """
  if array.ndim != 3 or len(target_shape) != 3 or array.shape[::2] != target_shape[::2]:
    return None
  target_side = int(round(np.sqrt(target_shape[1])))
  extra = target_shape[1] - target_side ** 2
  source_side = int(round(np.sqrt(array.shape[1] - extra))) if array.shape[1] > extra else 0
  if source_side ** 2 + extra != array.shape[1] or extra < 0:
    return None
  torch = _import_torch()
  dim = array.shape[-1]
  grid = torch.from_numpy(np.ascontiguousarray(array[:, extra:])).reshape(
      1, source_side, source_side, dim).permute(0, 3, 1, 2)  # [1, D, g, g]
  grid = torch.nn.functional.interpolate(grid, size=(target_side, target_side),
                                         mode='bilinear', align_corners=False)
  resized = grid.permute(0, 2, 3, 1).reshape(1, target_side ** 2, dim).numpy()
  return np.concatenate([array[:, :extra], resized], axis=1)


def import_state_dict(state_dict: Mapping[str, Any], model: Any, model_config: Any, *,
                      allow_missing: Iterable[str] | str = (),
                      allow_unexpected: Iterable[str] | str = (),
                      source: str = 'auto',
                      allow_untied_decoder: bool = False,
                      init: Optional[Variables] = None,
                      seed: int = 0) -> tuple[Variables, ImportReport]:
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
    init: variables that fill the allowed missing keys; by default ``init_variables(model,
      model_config, seed)``, computed only when something is missing.
    seed: seed of that default init.

  Raises:
    ConversionError: listing every missing, unexpected and mis-shaped key by name.
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
    report.notes.append('PVT-v1 classifier: vision path loaded; text path and heads keep the '
                        'JAX init.')

  template = _flatten(abstract_variables(model, model_config))
  expected = {torch_name(flat_key): flat_key for flat_key in template}
  bn_modules = {_bn_module_of(name) for name, key in expected.items() if key[0] == 'batch_stats'}

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
    elif name == TIED_DECODER_KEY and WORD_EMBEDDING_KEY in expected and any(
        key.startswith('mlm_head.') for key in expected):
      words = arrays.get(WORD_EMBEDDING_KEY)
      if words is not None and not np.array_equal(words, array):
        if allow_untied_decoder:
          report.notes.append(f'WARNING: {TIED_DECODER_KEY} differs from {WORD_EMBEDDING_KEY};'
                              ' the JAX model ties them and keeps the word embedding.')
        else:
          untied.append(f'{TIED_DECODER_KEY} differs from {WORD_EMBEDDING_KEY} (max abs diff '
                        f'{np.max(np.abs(words - array)) if words.shape == array.shape else "n/a"}'
                        '); the JAX model ties them (--allow_untied_decoder keeps the word '
                        'embedding)')
    elif name.endswith('.' + NUM_BATCHES_TRACKED) and _bn_module_of(name) in bn_modules:
      report.ignored.append(name)  # no JAX counterpart
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
    (to_fill if key_groups(name) & allow_missing else missing).append(name)

  if missing or unexpected or misshaped or untied:
    parts = ['State dict does not match the model:']
    for title, entries in (('missing', missing), ('unexpected', unexpected),
                           ('mis-shaped', misshaped), ('untied MLM decoder', untied)):
      if entries:
        parts.append(_list_names(title, entries))
    if missing:
      parts.append(f'  (--allow_missing=GROUP,... keeps the JAX init for a group; groups: '
                   f'{", ".join(GROUPS)})')
    if unexpected:
      parts.append('  (--allow_unexpected=GROUP,... ignores the keys of a group)')
    raise ConversionError('\n'.join(parts))

  if to_fill:
    if init is None:
      init = init_variables(model, model_config, seed)
    init_flat = _flatten(init)
    for name in to_fill:
      flat_key = expected[name]
      if flat_key not in init_flat:
        raise ConversionError(f'The init variables lack {"/".join(flat_key)} ({name}).')
      loaded[flat_key] = np.asarray(init_flat[flat_key])
      report.filled_from_init.append(name)
  return traverse_util.unflatten_dict(loaded), report


def torch_state_dict_to_variables(state_dict: Mapping[str, Any], model: Any, model_config: Any,
                                  allow_missing: Iterable[str] | str = (),
                                  **kwargs) -> Variables:
  """PyTorch state dict -> flax variables of ``model`` (see ``import_state_dict``)."""
  variables, report = import_state_dict(state_dict, model, model_config,
                                        allow_missing=allow_missing, **kwargs)
  logging.info('Imported PyTorch state dict: %s', report.summary())
  return variables


def check_against_port(state_dict: Mapping[str, Any], model_config: Any) -> None:
  """Checks that ``state_dict`` loads with ``strict=True`` into the PyTorch port of the config."""
  from mvlt_jax import torch_port  # pylint: disable=import-outside-toplevel
  port = torch_port.MVLT(torch_port.config_from_model_config(_model_config_of(model_config)))
  want = torch_port.state_dict_shapes(port.state_dict())
  have = {name: tuple(value.shape) for name, value in state_dict.items()}
  problems = ([f'missing {k}' for k in want if k not in have]
              + [f'unexpected {k}' for k in have if k not in want]
              + [f'shape {k}: {have[k]} != port {want[k]}' for k in want
                 if k in have and have[k] != want[k]])
  if problems:
    raise ConversionError('Exported state dict does not match the PyTorch port:\n'
                          + _list_names('problems', problems))


# ---------------------------------------------------------------------------------------
# Files: PyTorch side.
# ---------------------------------------------------------------------------------------

def _import_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ConversionError('PyTorch is needed to read or write PyTorch checkpoints: '
                          'pip install torch==2.13.0 (CPU build is enough; see '
                          'requirements-test.txt).') from error
  return torch


def load_torch_state_dict(path: str) -> dict[str, Any]:
  """A state dict from ``.pth`` (``{'model': sd}`` of the release, or a bare ``sd``) or
  ``.safetensors``. A ``module.`` prefix on every key (DistributedDataParallel) is removed.
  """
  if not os.path.isfile(path):
    raise ConversionError(f'{path}: no such file.')
  if path.endswith('.safetensors'):
    try:
      from safetensors.torch import load_file  # pylint: disable=import-outside-toplevel
    except ImportError as error:
      raise ConversionError(f'{path}: reading safetensors needs the safetensors package '
                            '(pip install safetensors==0.8.0).') from error
    state = load_file(path)
  else:
    torch = _import_torch()
    # Release checkpoints also pickle their argparse arguments; allow that one plain class.
    torch.serialization.add_safe_globals([argparse.Namespace])
    try:
      state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError ...
      raise ConversionError(f'{path}: cannot be read as a PyTorch checkpoint with '
                            f'weights_only=True: {error}') from error
  if isinstance(state, Mapping) and isinstance(state.get('model'), Mapping):
    state = state['model']
  if not isinstance(state, Mapping) or not state:
    raise ConversionError(f'{path}: holds neither a state dict nor {{"model": state_dict}} '
                          f'(got {type(state).__name__}).')
  bad = [name for name, value in state.items()
         if not isinstance(name, str) or not hasattr(value, 'shape')]
  if bad:
    raise ConversionError(f'{path}: entries that are not named tensors: {bad[:10]}.')
  if all(name.startswith('module.') for name in state):
    state = {name[len('module.'):]: value for name, value in state.items()}
  return dict(state)


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

def save_converted_checkpoint(variables: Mapping[str, Any], config: Any, path: str,
                              step: int = 0) -> str:
  """Writes a variables-only checkpoint that training (``init_from``) and evaluation read.

  Layout (``mvlt_jax.checkpoint.save_variables``): ``PATH/config.json`` (the full config)
  and ``PATH/<step>/state`` (orbax ``StandardSave`` of ``{'params', 'batch_stats'}``).
  Returns the step directory.
  """
  from mvlt_jax import checkpoint  # pylint: disable=import-outside-toplevel
  if os.path.exists(os.path.join(path, str(step))):
    raise ConversionError(f'{path} already holds a checkpoint at step {step}; choose a new '
                          '--out directory.')
  tree = jax.tree.map(np.asarray, dict(variables))
  return checkpoint.save_variables(path, tree, config, step=step)


def load_checkpoint_variables(path: str, step: Optional[int] = None) -> Variables:
  """``{'params', 'batch_stats'}`` (numpy) of a training or converted checkpoint.

  ``path`` is a checkpoint directory (its latest step, or ``step``) or a step directory.
  """
  from mvlt_jax import checkpoint  # pylint: disable=import-outside-toplevel
  try:
    variables, _ = checkpoint.load_variables(path, step)
  except checkpoint.CheckpointNotFoundError as error:
    raise ConversionError(str(error)) from error
  return jax.tree.map(np.asarray, jax.device_get(variables))


def load_checkpoint_config(path: str) -> Optional[Any]:
  """The ``config.json`` of a checkpoint (directory or step directory), or None."""
  from mvlt_jax import checkpoint  # pylint: disable=import-outside-toplevel
  for directory in (path, os.path.dirname(os.path.abspath(path))):
    if os.path.isfile(os.path.join(directory, checkpoint.CONFIG_FILE)):
      return checkpoint.read_config(directory)
  return None


# ---------------------------------------------------------------------------------------
# Configs and the command line.
# ---------------------------------------------------------------------------------------

def load_config(spec: str, overrides: Sequence[str] = ()) -> Any:
  """``configs/X.py`` (or ``configs/X.py:ARG``) -> ``get_config()``, with overrides applied.

  ``overrides`` are ``--config.a.b=value`` strings, as ``main.py`` takes them; values are
  Python literals (``16``, ``(1,1,1,1)``, ``'float32'``), anything else a plain string.
  """
  path, _, argument = spec.partition(':')
  if not os.path.isfile(path):
    raise ConversionError(f'--config: {path}: no such file.')
  module_spec = importlib.util.spec_from_file_location('_mvlt_convert_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, 'get_config'):
    raise ConversionError(f'--config: {path} has no get_config().')
  config = module.get_config(argument) if argument else module.get_config()
  for override in overrides:
    match = re.fullmatch(r'--config\.([\w.]+)=(.*)', override)
    if not match:
      raise ConversionError(f'Cannot parse override {override!r}; use --config.a.b=value.')
    dotted, text = match.groups()
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    *parents, leaf = dotted.split('.')
    node = config
    for parent in parents:
      node = node[parent]
    try:
      node[leaf] = value
    except (TypeError, KeyError, AttributeError) as error:
      raise ConversionError(f'Cannot apply {override!r}: {error}') from error
  return config


def _build_model(config: Any) -> Any:
  from mvlt_jax.models import build_model  # pylint: disable=import-outside-toplevel
  return build_model(_model_config_of(config))


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m mvlt_jax.convert',
      description='Convert MVLT weights between PyTorch (the public release, PVT-v1) and '
                  'mvlt_jax. Config fields can be overridden with --config.a.b=value.')
  commands = parser.add_subparsers(dest='command', required=True)
  to_torch = commands.add_parser('to-torch', help='mvlt_jax checkpoint -> PyTorch state dict')
  source = to_torch.add_mutually_exclusive_group(required=True)
  source.add_argument('--checkpoint', help='checkpoint directory (see docs/convert.md)')
  source.add_argument('--init', action='store_true',
                      help='export a freshly initialised model of --config')
  to_torch.add_argument('--config', help='configs/X.py; default: config.json of --checkpoint')
  to_torch.add_argument('--seed', type=int, default=0, help='seed of --init')
  to_torch.add_argument('--out', required=True, help='FILE.pth or FILE.safetensors')

  from_torch = commands.add_parser('from-torch', help='PyTorch state dict -> mvlt_jax checkpoint')
  from_torch.add_argument('--torch', required=True, help='FILE.pth or FILE.safetensors')
  from_torch.add_argument('--config', required=True, help='configs/X.py')
  from_torch.add_argument('--out', required=True, help='new checkpoint directory')
  from_torch.add_argument('--source', choices=SOURCES, default='auto',
                          help='mvlt (release), pvt (PVT-v1 ImageNet) or auto-detect')
  from_torch.add_argument('--allow_missing', default='',
                          help=f'groups that may be absent (kept from the init): {GROUPS}')
  from_torch.add_argument('--allow_unexpected', default='',
                          help='groups whose extra keys are ignored')
  from_torch.add_argument('--allow_untied_decoder', action='store_true',
                          help='keep the word embedding when the MLM decoder differs from it')
  from_torch.add_argument('--seed', type=int, default=0, help='seed of the init of missing keys')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Command-line entry point; returns the exit status (errors print one clear message)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = [a for a in argv if a.startswith('--config.')]
  args = _parser().parse_args([a for a in argv if not a.startswith('--config.')])
  try:
    if args.command == 'to-torch':
      _run_to_torch(args, overrides)
    else:
      _run_from_torch(args, overrides)
  except MVLTError as error:  # ConversionError and the config/checkpoint errors
    print(f'error: {error}', file=sys.stderr)
    return 1
  return 0


def _run_to_torch(args: argparse.Namespace, overrides: Sequence[str]) -> None:
  config = load_config(args.config, overrides) if args.config else None
  if args.init:
    if config is None:
      raise ConversionError('--init needs --config.')
    variables = init_variables(_build_model(config), _model_config_of(config), args.seed)
  else:
    variables = load_checkpoint_variables(args.checkpoint)
    if config is None:
      config = load_checkpoint_config(args.checkpoint)
  state_dict = variables_to_torch_state_dict(variables)
  if config is not None:
    check_against_port(state_dict, config)
  save_torch_state_dict(state_dict, args.out)
  print(f'wrote {len(state_dict)} tensors to {args.out}')


def _run_from_torch(args: argparse.Namespace, overrides: Sequence[str]) -> None:
  config = load_config(args.config, overrides)
  state_dict = load_torch_state_dict(args.torch)
  try:
    variables, report = import_state_dict(
        state_dict, _build_model(config), _model_config_of(config),
        allow_missing=args.allow_missing, allow_unexpected=args.allow_unexpected,
        source=args.source, allow_untied_decoder=args.allow_untied_decoder, seed=args.seed)
  except ConversionError as error:
    raise ConversionError(f'{args.torch}: {error}') from error
  save_converted_checkpoint(variables, config, args.out)
  print(report.summary())
  print(f'wrote {args.out}')


if __name__ == '__main__':
  sys.exit(main())
