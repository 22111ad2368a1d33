"""Inference with a trained MVLT: ``Predictor(config, variables)`` or ``Predictor.from_checkpoint``."""
import functools
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from mvlt_jax.models import build_model


class Predictor:
  """Runs the model's heads on batches of images and captions (jit'd once per shape).

  Args:
    config: the run's ConfigDict (``config.model`` describes the model).
    variables: ``{'params': ..., 'batch_stats': ...}``.
    tokenizer: optional; needed to pass captions as strings.
  """

  def __init__(self, config, variables, tokenizer=None):
    self.config = config
    self.model = build_model(config.model)
    self.variables = variables
    self.tokenizer = tokenizer
    self._forward = jax.jit(functools.partial(self.model.apply, train=False))

  @classmethod
  def from_checkpoint(cls, path: str, step: Optional[int] = None) -> 'Predictor':
    """Loads the config, variables and tokenizer saved by training (``DIR/checkpoints``)."""
    from mvlt_jax import checkpoint as checkpoint_lib  # pylint: disable=import-outside-toplevel
    config, variables, tokenizer = checkpoint_lib.load_for_inference(path, step=step)
    return cls(config, variables, tokenizer)

  def forward(self, images, input_ids) -> dict[str, np.ndarray]:
    """images float32 [B, H, W, 3] in [0, 1], input_ids int32 [B, L] -> the heads' outputs.

    ``mlm_logits`` are computed at all positions ([B, L, V]).
    """
    images = jnp.asarray(images, jnp.float32)
    input_ids = jnp.asarray(input_ids, jnp.int32)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'images must be [B, H, W, 3], got {images.shape}.')
    if input_ids.ndim != 2 or input_ids.shape[0] != images.shape[0]:
      raise ValueError(f'input_ids must be [B, L] with B={images.shape[0]}, '
                       f'got {input_ids.shape}.')
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
