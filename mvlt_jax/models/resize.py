"""Bilinear resizing with PyTorch's exact semantics, as matrix products.

``jax.image.resize`` uses half-pixel centres and antialiases when downsampling; the
release uses ``F.interpolate(mode='bilinear')`` both with ``align_corners=False``
(position embeddings) and ``align_corners=True`` (the MIR decoder). Both are written
out here as separable interpolation matrices, built on the host from static shapes.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def interpolation_matrix(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
  """[out_size, in_size] weights of 1-D linear interpolation, as PyTorch computes them."""
  dst = np.arange(out_size, dtype=np.float64)
  if align_corners:
    scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    src = dst * scale
  else:
    src = (dst + 0.5) * (in_size / out_size) - 0.5
    src = np.maximum(src, 0.0)
  lower = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  upper = np.minimum(lower + 1, in_size - 1)
  frac = src - lower
  matrix = np.zeros((out_size, in_size), np.float64)
  np.add.at(matrix, (np.arange(out_size), lower), 1.0 - frac)
  np.add.at(matrix, (np.arange(out_size), upper), frac)
  return matrix.astype(np.float32)


def resize_bilinear(
    x: jax.Array, out_hw: tuple[int, int], *, align_corners: bool, precision=None
) -> jax.Array:
  """Resizes ``x`` [B, H, W, C] to [B, out_h, out_w, C]."""
  _, height, width, _ = x.shape
  out_h, out_w = out_hw
  if (height, width) == (out_h, out_w):
    return x
  rows = jnp.asarray(interpolation_matrix(height, out_h, align_corners), x.dtype)
  cols = jnp.asarray(interpolation_matrix(width, out_w, align_corners), x.dtype)
  x = jnp.einsum('oh,bhwc->bowc', rows, x, precision=precision)  # [B, out_h, W, C]
  return jnp.einsum('pw,bowc->bopc', cols, x, precision=precision)  # [B, out_h, out_w, C]
