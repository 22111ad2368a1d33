"""On-device masking for pre-training: grid image masking (MIR) and word masking (MLM).

Both are pure functions of a PRNG key, jit-able, and run inside the training step, so
the host pipeline only ships raw images and token ids.
"""

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mvlt_jax.errors import ConfigError

# masking.image_distribution: how the masked units of an image are drawn.
# 'exact': exactly round(ratio * units) units per image, uniformly (the paper's words).
# 'release': the release's ``generate_grid_mask``: shuffle round(ratio * units) ones among
#   ``units`` entries and take row i of the unit grid from the window [i : i + cols] of that
#   list (overlapping windows), so the masked share varies per image (16x16 units at ratio
#   0.5: mean 0.50, std ~0.095, range ~0.15-0.81) and adjacent rows are strongly correlated.
IMAGE_MASK_DISTRIBUTIONS = ('exact', 'release')


def grid_cell_mask(
    rng: jax.Array, batch: int, rows: int, cols: int, *, ratio: float, distribution: str = 'exact'
) -> jax.Array:
  """The masked units of ``batch`` images: bool [B, rows, cols], True = masked."""
  if distribution not in IMAGE_MASK_DISTRIBUTIONS:
    raise ConfigError(
        f'config.masking.image_distribution={distribution!r}; use one of '
        f'{IMAGE_MASK_DISTRIBUTIONS}.'
    )
  num_cells = rows * cols
  num_masked = int(round(ratio * num_cells))
  scores = jax.random.uniform(rng, (batch, num_cells))
  ranks = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)  # a random permutation per image
  shuffled = ranks < num_masked  # [B, units]: num_masked ones, shuffled
  if distribution == 'exact':
    return shuffled.reshape(batch, rows, cols)
  windows = np.arange(rows)[:, None] + np.arange(cols)[None, :]  # [rows, cols]: i + j
  return shuffled[:, windows]  # [B, rows, cols]


def mask_image_grid(
    rng: jax.Array,
    images: jax.Array,
    *,
    unit: int,
    ratio: float,
    fill: float,
    distribution: str = 'exact',
) -> tuple[jax.Array, jax.Array]:
  """Fills ``unit`` x ``unit`` cells of each image with ``fill``, drawn by ``distribution``.

  Args:
    images: [B, H, W, C]; H and W must be multiples of ``unit``.
  Returns:
    (masked images [B, H, W, C], cell mask [B, H/unit, W/unit] bool, True = masked).
    With ``exact``, ``round(ratio * cells)`` cells are masked in every image; with
    ``release`` that many on average (see ``IMAGE_MASK_DISTRIBUTIONS``).
  """
  batch, height, width, _ = images.shape
  if height % unit or width % unit:
    raise ValueError(f'Image size {height}x{width} is not a multiple of the mask unit {unit}.')
  rows, cols = height // unit, width // unit
  cell_mask = grid_cell_mask(
      rng, batch, rows, cols, ratio=ratio, distribution=distribution
  )  # [B, rows, cols]
  pixel_mask = jnp.repeat(jnp.repeat(cell_mask, unit, axis=1), unit, axis=2)  # [B, H, W]
  masked = jnp.where(pixel_mask[..., None], jnp.asarray(fill, images.dtype), images)
  return masked, cell_mask


class TokenSpec(NamedTuple):
  """What word masking needs to know about the tokenizer."""

  vocab_size: int
  special_ids: tuple[int, ...]  # never masked ([PAD], [UNK], [CLS], [SEP], [MASK])
  mask_id: int

  @classmethod
  def from_tokenizer(cls, tokenizer) -> 'TokenSpec':
    return cls(
        int(tokenizer.vocab_size),
        tuple(int(i) for i in tokenizer.special_ids),
        int(tokenizer.mask_id),
    )


class MaskedTokens(NamedTuple):
  input_ids: jax.Array  # [B, L] with [MASK] / random / kept tokens at chosen positions
  positions: jax.Array  # [B, P] chosen positions (padded with 0)
  labels: jax.Array  # [B, P] original ids at the chosen positions (0 where padded)
  weights: jax.Array  # [B, P] 1.0 at real predictions, 0.0 at padding
  full_labels: jax.Array  # [B, L] original ids at chosen positions, -1 elsewhere


def mask_tokens(
    rng: jax.Array,
    input_ids: jax.Array,
    *,
    vocab_size: int,
    special_ids: Sequence[int],
    mask_id: int,
    prob: float,
    mask_frac: float,
    random_frac: float,
    max_predictions: int,
) -> MaskedTokens:
  """BERT-style word masking, at most ``max_predictions`` positions per sequence.

  Each non-special token is chosen with probability ``prob``; of the chosen, ``mask_frac``
  become [MASK], ``random_frac`` a random regular token, the rest stay. When more than
  ``max_predictions`` are chosen, only the first ``max_predictions`` (in position order)
  are kept, so that the masked-position MLM loss equals the full-logits loss exactly.
  """
  batch, length = input_ids.shape
  max_predictions = min(max_predictions, length) if max_predictions > 0 else length
  choose_rng, kind_rng, token_rng = jax.random.split(rng, 3)
  special = jnp.isin(input_ids, jnp.asarray(list(special_ids), input_ids.dtype))
  chosen = jax.random.bernoulli(choose_rng, prob, (batch, length)) & ~special
  chosen &= jnp.cumsum(chosen, axis=1) <= max_predictions  # cap per sequence
  kind = jax.random.uniform(kind_rng, (batch, length))
  first_regular_id = max(special_ids) + 1
  random_tokens = jax.random.randint(
      token_rng, (batch, length), first_regular_id, vocab_size, dtype=input_ids.dtype
  )
  replaced = jnp.where(
      kind < mask_frac,
      jnp.asarray(mask_id, input_ids.dtype),
      jnp.where(kind < mask_frac + random_frac, random_tokens, input_ids),
  )
  masked_ids = jnp.where(chosen, replaced, input_ids)
  full_labels = jnp.where(chosen, input_ids, -1)
  # Positions of the chosen tokens first (stable order), padded with non-chosen ones.
  order = jnp.argsort(~chosen, axis=1, stable=True)[:, :max_predictions]  # [B, P]
  weights = jnp.take_along_axis(chosen, order, axis=1)
  positions = jnp.where(weights, order, 0)
  labels = jnp.where(weights, jnp.take_along_axis(input_ids, order, axis=1), 0)
  return MaskedTokens(
      masked_ids, positions.astype(jnp.int32), labels, weights.astype(jnp.float32), full_labels
  )
