"""Inference with a trained MVLT: ``Predictor(config, variables)`` or ``Predictor.from_checkpoint``.

The Predictor computes in float32 by default, whatever dtype the checkpoint was trained in
(``model.dtype``, bfloat16 in ``configs/pretrain.py``): bfloat16 moves the MLM logits of a
converted release checkpoint about 4e-2 away from the release's. Pass ``dtype='bfloat16'``
(or ``'float16'``) for speed, or ``dtype=''`` for the checkpoint's compute dtype. The
parameters are used as stored (the model casts them where it computes).

Inputs are checked before anything is computed; what the model cannot take is a
:class:`PredictorInputError` (an ``MVLTError`` and a ``ValueError``) that says what it expects:

* images: ``[N, H, W, 3]`` with H and W multiples of 32 (the model patchifies by 4, then halves
  the grid three times; the position embeddings are resized to any such grid). The
  checkpoint's ``config.model.image_size`` S (``[N, S, S, 3]``) is the size it was trained at
  and the one to use. ``uint8`` images are in [0, 255] and scaled to [0, 1] as training scales
  them (``steps.images_to_float``: / 255); float images are taken as they are and must be in
  [0, 1] (values up to ``FLOAT_IMAGE_TOLERANCE`` outside it, e.g. from resampling, pass; NaN,
  Inf, [0, 255] floats or mean/std-normalised images are refused). Other dtypes are refused.
* token ids: integers ``[N, L]``, one row per image, L <= ``config.model.text_length``, every
  id in [0, ``config.model.vocab_size``) (an id outside it would give NaN outputs).
* captions (``itm_scores``, ``encode``): a list of strings, one per image, encoded with the
  checkpoint's tokenizer; a single string is one caption (not a sequence of characters).
"""

import functools
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from mvlt_jax.errors import ConfigError, MVLTError
from mvlt_jax.models import build_model, compute_dtype
from mvlt_jax.models.mvlt import PATCH_SIZES

DEFAULT_DTYPE = 'float32'
DTYPES = ('float32', 'bfloat16', 'float16')  # and '' = the checkpoint's model.dtype
# Image sides must be multiples of this: stage 1 patchifies by 4, stages 2-4 halve the grid.
IMAGE_MULTIPLE = int(np.prod(PATCH_SIZES))  # 32
# Float images must lie in [-tolerance, 1 + tolerance]: [0, 1] plus resampling overshoot.
FLOAT_IMAGE_TOLERANCE = 0.1


class PredictorInputError(MVLTError, ValueError):
  """Images, token ids or captions the model cannot take; the message says what it expects."""


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

  Inputs are checked first (module docstring): images uint8 [0, 255] or float [0, 1],
  [N, H, W, 3] with H, W multiples of 32; token ids in [0, vocab_size); a single caption
  string is one caption. What the model cannot take raises :class:`PredictorInputError`.

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
    """images [N, H, W, 3], input_ids [N, L] -> the heads' outputs (numpy).

    Args:
      images: uint8 in [0, 255] (scaled by 1/255, as training does) or floats in [0, 1]; H
        and W multiples of 32, best the checkpoint's ``config.model.image_size``.
      input_ids: integer token ids, one row per image, L <= ``config.model.text_length``,
        each in [0, ``config.model.vocab_size``).

    ``mlm_logits`` are computed at all positions ([N, L, V]).

    Raises:
      PredictorInputError: inputs the model cannot take (see :meth:`prepare_images`,
        :meth:`check_input_ids`).
    """
    images = self.prepare_images(images)
    input_ids = self.check_input_ids(input_ids, images.shape[0])
    outputs = self._forward(self.variables, jnp.asarray(images), jnp.asarray(input_ids))
    return jax.tree.map(np.asarray, outputs)

  def prepare_images(self, images) -> np.ndarray:
    """images as the model takes them: float32 [N, H, W, 3] in [0, 1].

    ``uint8`` [0, 255] is divided by 255 (``steps.images_to_float``, as in training); floats
    pass as they are if they lie in [0, 1] give or take ``FLOAT_IMAGE_TOLERANCE``.

    Raises:
      PredictorInputError: another shape (H or W not a multiple of 32), another dtype, or
        floats outside that range (NaN and Inf included).
    """
    array = np.asarray(images)
    size = self.config.model.get('image_size')
    trained = f'; this checkpoint was trained at [N, {size}, {size}, 3]' if size else ''
    if (
        array.ndim != 4
        or array.shape[-1] != 3
        or any(side < IMAGE_MULTIPLE or side % IMAGE_MULTIPLE for side in array.shape[1:3])
    ):
      raise PredictorInputError(
          f'images must be [N, H, W, 3] with H and W multiples of {IMAGE_MULTIPLE}{trained}; got '
          f'shape {array.shape}.'
      )
    if array.dtype == np.uint8:  # steps.images_to_float's own expression (XLA rounds it alike)
      return np.asarray(jnp.asarray(array).astype(jnp.float32) / 255.0)
    if not np.issubdtype(array.dtype, np.floating):
      raise PredictorInputError(
          f'images must be uint8 in [0, 255] or floats in [0, 1]; got dtype {array.dtype}'
          + (
              ' (cast [0, 255] integers to uint8).'
              if np.issubdtype(array.dtype, np.integer)
              else '.'
          )
      )
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
      raise PredictorInputError(
          f'images hold {int((~np.isfinite(array)).sum())} NaN or Inf values; float images must '
          'be in [0, 1].'
      )
    low, high = float(array.min()), float(array.max())
    if low < -FLOAT_IMAGE_TOLERANCE or high > 1.0 + FLOAT_IMAGE_TOLERANCE:
      raise PredictorInputError(
          f'float images must be in [0, 1]; got values from {low:.4g} to {high:.4g} (pass '
          '[0, 255] images as uint8, which the Predictor scales; no mean/std normalisation).'
      )
    return array

  def check_input_ids(self, input_ids, batch: Optional[int] = None) -> np.ndarray:
    """input_ids as int32 [N, L], checked against the model (``batch``: N, if known).

    Raises:
      PredictorInputError: not integers, not [N, L] with L <= ``config.model.text_length``,
        or ids outside [0, ``config.model.vocab_size``).
    """
    ids = np.asarray(input_ids)
    if not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
      raise PredictorInputError(f'input_ids must be integer token ids; got dtype {ids.dtype}.')
    length = self.config.model.text_length
    if (
        ids.ndim != 2
        or (batch is not None and ids.shape[0] != batch)
        or not 1 <= ids.shape[1] <= length
    ):
      rows = f' with N={batch} (one row per image)' if batch is not None else ''
      raise PredictorInputError(
          f'input_ids must be [N, L]{rows} and 1 <= L <= {length} (model.text_length); got '
          f'shape {ids.shape}.'
      )
    vocab = self.config.model.vocab_size
    outside = (ids < 0) | (ids >= vocab)
    if outside.any():
      raise PredictorInputError(
          f'input_ids hold {int(outside.sum())} ids outside the vocabulary, from '
          f'{int(ids[outside].min())} to {int(ids[outside].max())}; ids must be in [0, {vocab}) '
          f'(model.vocab_size={vocab}).'
      )
    return ids.astype(np.int32)

  def encode(self, captions: Union[str, Sequence[str]]) -> np.ndarray:
    """Captions -> int32 [N, text_length] with the checkpoint's tokenizer.

    ``captions``: a list of strings, or one string (one caption, N = 1).
    """
    if isinstance(captions, str):
      captions = [captions]
    if self.tokenizer is None:
      raise PredictorInputError(
          'This Predictor has no tokenizer (the checkpoint holds none): pass token ids '
          'instead of strings.'
      )
    if not all(isinstance(caption, str) for caption in captions):
      raise PredictorInputError(
          'captions must be strings (or pass token ids, an integer array [N, L]); got '
          f'{sorted({type(c).__name__ for c in captions})}.'
      )
    length = self.config.model.text_length
    return np.stack([self.tokenizer.encode(c, length) for c in captions]).astype(np.int32)

  def itm_scores(self, images, captions: Union[str, Sequence[str], np.ndarray]) -> np.ndarray:
    """P(matched) = softmax(ITM logits)[1] of each (image i, caption i) pair: [N].

    ``captions``: one string per image (a list), a single string (one caption, for one
    image), or token ids [N, L] (see :meth:`forward`).

    Raises:
      PredictorInputError: as :meth:`forward`; or not one caption per image.
      ConfigError: the checkpoint has no ITM head.
    """
    if 'itm' not in self.config.model.heads:
      raise ConfigError(
          f'itm_scores needs the ITM head; this checkpoint has {tuple(self.config.model.heads)}.'
      )
    images = self.prepare_images(images)
    if isinstance(captions, str) or (
        isinstance(captions, (list, tuple)) and any(isinstance(c, str) for c in captions)
    ):
      input_ids = self.encode(captions)
      if len(input_ids) != len(images):
        raise PredictorInputError(
            f'{len(input_ids)} caption(s) for {len(images)} image(s): itm_scores scores pair i '
            '(image i, caption i); give one caption per image (e.g. [caption] * N).'
        )
    else:
      input_ids = captions
    logits = self.forward(images, input_ids)['itm_logits']
    return np.asarray(jax.nn.softmax(logits, axis=-1)[:, 1])
