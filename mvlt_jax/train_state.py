"""The training state: a small pytree dataclass, and how it is created.

``create_train_state`` (fresh, from ``config.seed``), ``load_init_from`` (parameters of a
checkpoint or a PyTorch file over a fresh state) and ``init_variables`` (the one model
initialiser, shared with the summary and the converter).
"""

import os
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

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
  new state and the names of the top-level parameter modules that were loaded.

  ``init_from`` is a checkpoint directory (ours, or converted) or a PyTorch file (e.g. PVT's
  ImageNet ``pvt_tiny.pth``, or a release checkpoint), converted on the fly with the
  converter's strictness and messages. Modules present in the new model but absent from the
  source (e.g. new heads, or all but the vision path for ``pvt_tiny.pth``) keep their fresh
  initialisation; shapes of shared modules must agree.
  """
  from mvlt_jax import convert  # pylint: disable=import-outside-toplevel

  path = config.init_from
  class_mapping = None
  if 'recognition' in config.model.heads and path.endswith(convert.TORCH_FILE_SUFFIXES):
    # A release recognition checkpoint: its head rows follow the release's class order; map
    # them by name to the classes of the dataset this run trains on.
    class_mapping = convert.make_class_mapping(
        os.path.join(config.dataset.data_dir, config.dataset.name)
    )
  variables, description = convert.load_init_variables(
      path, config.model, class_mapping=class_mapping
  )
  merged, loaded_params = {}, set()
  for collection in ('params', 'batch_stats'):
    current = getattr(state, collection)
    loaded = variables.get(collection, {})
    new, used = _merge(current, loaded, path=collection)
    merged[collection] = new
    if collection == 'params':
      loaded_params = set(used)
    logging.info(
        'init_from %s (%s): %s: took %d modules, kept %d fresh',
        path,
        description,
        collection,
        len(used),
        len(set(current) - set(used)),
    )
  if jax.process_index() == 0:
    print(f'init_from {path}: {description}', flush=True)
  return state.replace(**merged), loaded_params


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


def _merge(current: dict, loaded: dict, path: str):
  out, used = dict(current), []
  for name, value in loaded.items():
    if name not in current:
      continue  # e.g. pre-training heads when fine-tuning for recognition
    shapes_now = jax.tree.map(lambda x: x.shape, current[name])
    shapes_loaded = jax.tree.map(lambda x: tuple(np.shape(x)), value)
    if shapes_now != shapes_loaded:
      raise ConfigError(
          f'init_from: {path}/{name} has other shapes in the checkpoint than in '
          'the configured model.'
      )
    out[name] = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), value, current[name])
    used.append(name)
  return out, used
