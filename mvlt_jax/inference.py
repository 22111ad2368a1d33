"""Inference with a trained MVLT: ``Predictor(config, variables)`` or ``Predictor.from_checkpoint``.

The Predictor computes in float32 by default, whatever dtype the checkpoint was trained in
(``model.dtype``, bfloat16 in ``configs/pretrain.py``): bfloat16 moves the MLM logits of a
converted release checkpoint about 4e-2 away from the release's. Pass ``dtype='bfloat16'``
(or ``'float16'``) for speed, or ``dtype=''`` for the checkpoint's compute dtype. The
parameters are used as stored (the model casts them where it computes).
"""

import functools
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from mvlt_jax.errors import ConfigError
from mvlt_jax.models import build_model, compute_dtype

DEFAULT_DTYPE = 'float32'
DTYPES = ('float32', 'bfloat16', 'float16')  # and '' = the checkpoint's model.dtype


def _checkpoint_dtype(dtype: Any) -> bool:
  """Whether ``dtype`` asks for the checkpoint's own compute dtype ('' or None)."""
  return dtype is None or (isinstance(dtype, str) and not dtype)


def resolve_dtype(dtype: Any, model_config) -> str:
  """The compute dtype's name: ``dtype`` ('' or None = ``model_config.dtype``).

  Also accepts dtype objects (``jnp.bfloat16``, ``np.float32``).

  Raises:
    ConfigError: not one of :data:`DTYPES`.
  """
  if _checkpoint_dtype(dtype):
    name, where = model_config.dtype, "the checkpoint's model.dtype"
  elif isinstance(dtype, str):
    name, where = dtype, 'dtype'
  else:
    try:
      name = jnp.dtype(dtype).name
    except TypeError as e:
      raise ConfigError(f"dtype must be one of {DTYPES} or '', got {dtype!r}.") from e
    where = 'dtype'
  if name not in DTYPES:
    raise ConfigError(
        f'Unknown {where} {name!r} for inference; choose one of {DTYPES} '
        "('' = the checkpoint's model.dtype)."
    )
  return name


class Predictor:
  """Runs the model's heads on batches of images and captions (jit'd once per shape).

  Args:
    config: the run's ConfigDict (``config.model`` describes the model).
    variables: ``{'params': ..., 'batch_stats': ...}`` (used as they are).
    tokenizer: optional; needed to pass captions as strings.
    dtype: compute dtype: 'float32' (default), 'bfloat16', 'float16', or '' for the
      checkpoint's ``config.model.dtype``.

  Raises:
    ConfigError: an unknown ``dtype``.
  """

  def __init__(self, config, variables, tokenizer=None, dtype: Any = DEFAULT_DTYPE):
    self.config = config
    self.dtype = resolve_dtype(dtype, config.model)  # the name, e.g. 'float32'
    self.model = build_model(config.model, dtype=compute_dtype(self.dtype))
    self.variables = variables
    self.tokenizer = tokenizer
    self._forward = jax.jit(functools.partial(self.model.apply, train=False))

  @classmethod
  def from_checkpoint(
      cls, path: str, step: Optional[int] = None, dtype: Any = DEFAULT_DTYPE
  ) -> 'Predictor':
    """Loads the config, variables and tokenizer saved by training (``DIR/checkpoints``)
    or by conversion; ``dtype`` as in the constructor (float32 by default)."""
    from mvlt_jax import checkpoint as checkpoint_lib  # pylint: disable=import-outside-toplevel

    if not _checkpoint_dtype(dtype):  # a bad name fails before the checkpoint is read
      resolve_dtype(dtype, None)
    config, variables, tokenizer = checkpoint_lib.load_for_inference(path, step=step)
    return cls(config, variables, tokenizer, dtype=dtype)

  def forward(self, images, input_ids) -> dict[str, np.ndarray]:
    """images float32 [B, H, W, 3] in [0, 1], input_ids int32 [B, L] -> the heads' outputs.

    ``mlm_logits`` are computed at all positions ([B, L, V]).
    """
    images = jnp.asarray(images, jnp.float32)
    input_ids = jnp.asarray(input_ids, jnp.int32)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'images must be [B, H, W, 3], got {images.shape}.')
    if input_ids.ndim != 2 or input_ids.shape[0] != images.shape[0]:
      raise ValueError(
          f'input_ids must be [B, L] with B={images.shape[0]}, ' f'got {input_ids.shape}.'
      )
    outputs = self._forward(self.variables, images, input_ids)
    return jax.tree.map(np.asarray, outputs)

  def encode(self, captions: Sequence[str]) -> np.ndarray:
    if self.tokenizer is None:
      raise ValueError('This Predictor has no tokenizer: pass token ids instead of strings.')
    length = self.config.model.text_length
    return np.stack([self.tokenizer.encode(c, length) for c in captions]).astype(np.int32)

  def itm_scores(self, images, captions: Union[Sequence[str], np.ndarray]) -> np.ndarray:
    """P(matched) = softmax(ITM logits)[1] of each (image, caption) pair: [B]."""
    if len(captions) and isinstance(captions[0], str):
      input_ids = self.encode(captions)
    else:
      input_ids = np.asarray(captions, np.int32)
    logits = self.forward(images, input_ids)['itm_logits']
    return np.asarray(jax.nn.softmax(logits, axis=-1)[:, 1])
