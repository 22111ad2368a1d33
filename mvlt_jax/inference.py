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

Photos get the training preprocessing (:func:`load_photo`, ``input_pipeline.image_ops`` as
``prepare`` applies it): a photo is a file path, encoded image bytes, a PIL image or a uint8
array ``[H, W, 3]`` / ``[H, W]`` / ``[H, W, 4]`` of any size, or a list of these. Each is turned
upright (EXIF), made RGB on white, cropped to its non-white content and resized (bilinear) to
the checkpoint's ``config.model.image_size``, then scaled like any uint8 image. A 4-D array is
a batch the model takes as it is (no crop, no resize: e.g. the prepared dataset's images);
one of another size than the checkpoint's runs at that size, with a warning.

Embeddings (:meth:`Predictor.embed_images`, :meth:`Predictor.embed_captions`) are the
full-gallery retrieval's first-stage features (``evaluators.retrieval.make_pooled_features``):
the last stage's visual tokens averaged (beside an empty caption), or its caption tokens
averaged over the non-[PAD] positions (beside a white image), L2-normalised.
"""

import functools
import os
import warnings
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageOps

from input_pipeline import image_ops  # TensorFlow-free: PIL and numpy
from input_pipeline.errors import ImageDecodeError
from mvlt_jax.errors import ConfigError, MVLTError, printable
from mvlt_jax.models import build_model, compute_dtype
from mvlt_jax.models.mvlt import PATCH_SIZES

DEFAULT_DTYPE = 'float32'
DTYPES = ('float32', 'bfloat16', 'float16')  # and '' = the checkpoint's model.dtype
# Image sides must be multiples of this: stage 1 patchifies by 4, stages 2-4 halve the grid.
IMAGE_MULTIPLE = int(np.prod(PATCH_SIZES))  # 32
# Float images must lie in [-tolerance, 1 + tolerance]: [0, 1] plus resampling overshoot.
FLOAT_IMAGE_TOLERANCE = 0.1


# The value of the white image beside a caption in the caption embedding (as the full-gallery
# retrieval's text pass, evaluators.retrieval.BLANK_IMAGE_VALUE).
BLANK_IMAGE_VALUE = 1.0
# Token id of [PAD] when the Predictor has no tokenizer to say it (the project's tokenizers
# all use 0).
DEFAULT_PAD_ID = 0


class PredictorInputError(MVLTError, ValueError):
  """Images, token ids or captions the model cannot take; the message says what it expects."""


def is_photo(item: Any) -> bool:
  """Whether ``item`` is one photo: a path, encoded bytes, a PIL image, or a uint8 array
  ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]`` (a 4-D array is a batch, not a photo)."""
  if isinstance(item, (str, os.PathLike, bytes, bytearray, Image.Image)):
    return True
  return (
      isinstance(item, np.ndarray)
      and item.dtype == np.uint8
      and (item.ndim == 2 or (item.ndim == 3 and item.shape[-1] in (3, 4)))
  )


def _are_photos(images: Any) -> bool:
  """One photo, or a list / tuple holding photos (a list of anything else is a batch)."""
  return is_photo(images) or (
      isinstance(images, (list, tuple)) and any(is_photo(item) for item in images)
  )


def photo_name(photo: Any) -> str:
  """How messages name a photo: its path, or what it is."""
  if isinstance(photo, (str, os.PathLike)):
    return printable(os.fspath(photo))
  if isinstance(photo, np.ndarray):
    return f'a uint8 array {photo.shape}'
  if isinstance(photo, Image.Image):
    return f'a PIL image ({photo.mode}, {photo.size[0]}x{photo.size[1]})'
  if isinstance(photo, (bytes, bytearray)):
    return f'{len(photo):,} bytes of image data'
  return f'a {type(photo).__name__}'


def load_photo(
    photo: Any,
    size: int,
    *,
    crop_margin: bool = True,
    max_pixels: int = image_ops.DEFAULT_MAX_IMAGE_PIXELS,
    max_bytes: int = image_ops.DEFAULT_MAX_IMAGE_BYTES,
) -> np.ndarray:
  """One photo as training saw it: uint8 ``[size, size, 3]``.

  The preprocessing ``prepare`` applies to a catalog's images (``input_pipeline.image_ops``):
  decoded (files and bytes: JPEG, PNG, WEBP, GIF, BMP or TIFF, up to ``max_pixels`` pixels and
  ``max_bytes`` bytes), turned upright by its EXIF orientation, made RGB on white (any mode,
  transparency composited on white), cropped to its non-white content (``crop_margin``) and
  resized to ``size`` x ``size`` with PIL's bilinear filter.

  Args:
    photo: a file path, encoded image bytes, a PIL image, or a uint8 array ``[H, W, 3]``,
      ``[H, W]`` (grayscale) or ``[H, W, 4]`` (RGBA) of any size.
    size: the output side (a checkpoint's ``config.model.image_size``).

  Raises:
    PredictorInputError: a missing or unreadable file, bytes that are not an accepted image,
      an image over the limits, or an array of another dtype or shape.
  """
  name = photo_name(photo)
  if isinstance(photo, (str, os.PathLike)):
    path = os.fspath(photo)
    if not os.path.isfile(path):
      raise PredictorInputError(f'{name}: no such image file.')
    if os.path.getsize(path) > max_bytes:
      raise PredictorInputError(
          f'{name}: {os.path.getsize(path):,} bytes, over the limit of {max_bytes:,} for an '
          'image file.'
      )
    try:
      with open(path, 'rb') as f:
        photo = f.read()
    except OSError as e:
      raise PredictorInputError(f'{name}: cannot be read: {printable(e.strerror or e)}.') from e
  elif isinstance(photo, np.ndarray) and not is_photo(photo):
    raise PredictorInputError(
        f'{name} of dtype {photo.dtype}: a photo array must be uint8 [H, W, 3], [H, W] or '
        '[H, W, 4] (a batch the model takes as it is is [N, H, W, 3]).'
    )
  elif not is_photo(photo):
    raise PredictorInputError(
        f'{name} is not a photo: give a file path, image bytes, a PIL image or a uint8 array.'
    )
  try:
    if isinstance(photo, (bytes, bytearray)):
      return image_ops.decode_and_preprocess(bytes(photo), size, crop_margin, max_pixels)
    if isinstance(photo, Image.Image):
      photo = ImageOps.exif_transpose(photo)  # decoding a file does this too
    return image_ops.preprocess_image(photo, size, crop_margin)
  except ImageDecodeError as e:  # an MVLTError: say which photo
    raise PredictorInputError(f'{name}: {e}') from e
  except (OSError, ValueError, TypeError) as e:  # PIL: a mode it cannot convert, truncated data
    raise PredictorInputError(
        f'{name}: cannot be made an RGB image: {type(e).__name__}: {printable(e)}'
    ) from e


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
  [N, H, W, 3] with H, W multiples of 32, or photos (paths, PIL images, uint8 [H, W, 3]
  arrays, lists of these), which get the training preprocessing; token ids in
  [0, vocab_size); a single caption string is one caption. What the model cannot take raises
  :class:`PredictorInputError`.

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
    self._forward, self._features = _compiled(self.model, config.model, self.dtype)

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
      images: uint8 in [0, 255] (scaled by 1/255, as training does) or floats in [0, 1],
        [N, H, W, 3] with H and W multiples of 32, best the checkpoint's
        ``config.model.image_size``; or photos (see :meth:`load_images`).
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

  @property
  def image_size(self) -> Optional[int]:
    """The side the checkpoint was trained at (``config.model.image_size``), if it says."""
    size = self.config.model.get('image_size')
    return int(size) if size else None

  def load_images(self, photos) -> np.ndarray:
    """Photos -> uint8 [N, S, S, 3] at the checkpoint's image size S, by the training
    preprocessing (:func:`load_photo`: EXIF orientation, RGB on white, white-margin crop,
    bilinear resize).

    Args:
      photos: one photo or a list of photos; a photo is a file path, encoded image bytes, a
        PIL image, or a uint8 array [H, W, 3] / [H, W] / [H, W, 4] of any size.

    Raises:
      PredictorInputError: an item that is not a photo, or one that cannot be read.
    """
    items = [photos] if is_photo(photos) else list(photos)
    if not items:
      raise PredictorInputError('no images given.')
    for index, item in enumerate(items):
      if not is_photo(item):
        what = (
            f'an array of shape {item.shape} and dtype {item.dtype}'
            if isinstance(item, np.ndarray)
            else f'a {type(item).__name__}'
        )
        raise PredictorInputError(
            f'image {index} of the list is {what}; a list holds photos: file paths, image '
            'bytes, PIL images or uint8 [H, W, 3] arrays (or pass a batch [N, H, W, 3]).'
        )
    size = self.image_size
    if not size:
      raise PredictorInputError(
          "this checkpoint's config has no model.image_size to resize photos to: pass a "
          'batch [N, H, W, 3] instead.'
      )
    return np.stack([load_photo(item, size) for item in items])

  def prepare_images(self, images) -> np.ndarray:
    """images as the model takes them: float32 [N, H, W, 3] in [0, 1].

    Photos (a path, image bytes, a PIL image, a uint8 [H, W, 3] array, or a list of these)
    first get the training preprocessing at the checkpoint's size (:meth:`load_images`). A
    4-D array is a batch taken as it is: ``uint8`` [0, 255] is divided by 255
    (``steps.images_to_float``, as in training); floats pass as they are if they lie in
    [0, 1] give or take ``FLOAT_IMAGE_TOLERANCE``. A batch of another size than the
    checkpoint's runs at that size (the position embeddings resized), with a warning.

    Raises:
      PredictorInputError: another shape (H or W not a multiple of 32), another dtype, or
        floats outside that range (NaN and Inf included); a photo that cannot be read.
    """
    if _are_photos(images):
      images = self.load_images(images)
    array = np.asarray(images)
    size = self.image_size
    trained = f'; this checkpoint was trained at [N, {size}, {size}, 3]' if size else ''
    if (
        array.ndim != 4
        or array.shape[-1] != 3
        or any(side < IMAGE_MULTIPLE or side % IMAGE_MULTIPLE for side in array.shape[1:3])
    ):
      raise PredictorInputError(
          f'images must be [N, H, W, 3] with H and W multiples of {IMAGE_MULTIPLE}{trained}; got '
          f'shape {array.shape}. (Photos of any size: pass file paths, PIL images or uint8 '
          '[H, W, 3] arrays, one or a list, to have them cropped and resized as in training.)'
      )
    if size and array.shape[1:3] != (size, size):
      warnings.warn(
          f'images of {array.shape[1]}x{array.shape[2]} go through a model trained at '
          f'{size}x{size} as they are (a 4-D batch is not resized); pass them as photos (file '
          'paths, PIL images or uint8 [H, W, 3] arrays) to have them cropped and resized as '
          'in training.',
          stacklevel=3,
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

  def embed_images(self, images) -> np.ndarray:
    """L2-normalised image embeddings, float32 [N, D]: the last stage's visual tokens averaged,
    each image beside an empty caption (the full-gallery retrieval's first-stage image
    features). ``images`` as :meth:`forward` takes them, photos included.

    Raises:
      PredictorInputError: as :meth:`prepare_images`; or no tokenizer (for the empty caption).
    """
    if self.tokenizer is None:
      raise PredictorInputError(
          "embed_images needs the checkpoint's tokenizer (for the empty caption beside each "
          'image); this Predictor has none.'
      )
    images = self.prepare_images(images)
    empty = self.encode('')  # [1, L]: [CLS] [SEP] [PAD]...
    input_ids = np.repeat(empty, len(images), axis=0)
    visual, _ = self._features(
        self.variables, jnp.asarray(images), jnp.asarray(input_ids), self._text_valid(input_ids)
    )
    return np.asarray(visual)

  def embed_captions(self, captions: Union[str, Sequence[str], np.ndarray]) -> np.ndarray:
    """L2-normalised caption embeddings, float32 [N, D]: the last stage's caption tokens
    averaged over the non-[PAD] positions, each caption beside a white image (the full-gallery
    retrieval's first-stage caption features). The dot product of an image and a caption
    embedding is their cosine similarity.

    ``captions``: strings (one string is one caption) or token ids [N, L].

    Raises:
      PredictorInputError: as :meth:`encode` / :meth:`check_input_ids`.
    """
    if isinstance(captions, str) or (
        isinstance(captions, (list, tuple)) and any(isinstance(c, str) for c in captions)
    ):
      input_ids = self.encode(captions)
    else:
      input_ids = self.check_input_ids(captions)
    size = self.image_size or IMAGE_MULTIPLE
    images = np.full((len(input_ids), size, size, 3), BLANK_IMAGE_VALUE, np.float32)
    _, text = self._features(
        self.variables, jnp.asarray(images), jnp.asarray(input_ids), self._text_valid(input_ids)
    )
    return np.asarray(text)

  def _text_valid(self, input_ids: np.ndarray) -> jax.Array:
    pad_id = getattr(self.tokenizer, 'pad_id', DEFAULT_PAD_ID)
    return jnp.asarray(np.asarray(input_ids) != pad_id)


# jit'd (forward, features) by (model config, dtype): Predictors of one model share what was
# compiled (the variables are an argument).
_COMPILED: dict[tuple[str, str], tuple[Any, Any]] = {}


def _compiled(model, model_config, dtype: str):
  key = (model_config.to_json_best_effort(sort_keys=True), dtype)
  if key not in _COMPILED:
    # The embeddings' model: no heads (the variables' head parameters go unused).
    features_model = build_model(model_config, dtype=compute_dtype(dtype), heads=())
    _COMPILED[key] = (
        jax.jit(functools.partial(model.apply, train=False)),
        jax.jit(functools.partial(_pooled_features, features_model)),
    )
  return _COMPILED[key]


def _pooled_features(model, variables, images, input_ids, text_valid):
  """(visual [N, D], text [N, D]), L2-normalised: the last stage's visual tokens averaged and
  its text tokens averaged where ``text_valid``. The arithmetic of
  ``evaluators.retrieval.make_pooled_features`` (which reads data, hence TensorFlow: not
  importable here); tests/test_search.py checks that the two agree."""
  out = model.apply(variables, images, input_ids, train=False, return_features=True)
  visual = out['stage_maps'][-1].astype(jnp.float32).mean(axis=(1, 2))  # [N, D]
  weights = text_valid.astype(jnp.float32)[..., None]  # [N, L, 1]
  text = (out['text_tokens'].astype(jnp.float32) * weights).sum(1) / jnp.maximum(
      weights.sum(1), 1.0
  )  # [N, D]
  normalise = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  return normalise(visual), normalise(text)
