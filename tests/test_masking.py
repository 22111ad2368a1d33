"""On-device masking: image grid units and BERT-style word masking statistics."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mvlt_jax import masking

SPECIAL_IDS = (0, 1, 2, 3, 4)  # [PAD], [UNK], [CLS], [SEP], [MASK]
MASK_ID = 4
VOCAB = 1000


def test_image_grid_masks_exactly_the_ratio_of_units():
  images = jnp.asarray(np.random.default_rng(0).uniform(0.1, 1.0, (6, 64, 64, 3)), jnp.float32)
  masked, cells = jax.jit(functools.partial(masking.mask_image_grid, unit=16, ratio=0.5,
                                            fill=1e-6))(jax.random.key(0), images)
  assert cells.shape == (6, 4, 4)
  np.testing.assert_array_equal(cells.sum(axis=(1, 2)), 8)  # 50% of 16 units, every image
  pixel = np.repeat(np.repeat(np.asarray(cells), 16, 1), 16, 2)[..., None]
  masked = np.asarray(masked)
  np.testing.assert_array_equal(masked[np.broadcast_to(pixel, masked.shape)], np.float32(1e-6))
  np.testing.assert_array_equal(masked[~np.broadcast_to(pixel, masked.shape)],
                                np.asarray(images)[~np.broadcast_to(pixel, masked.shape)])
  assert not np.array_equal(cells[0], cells[1])  # different units per image
  _, again = masking.mask_image_grid(jax.random.key(0), images, unit=16, ratio=0.5, fill=1e-6)
  np.testing.assert_array_equal(cells, again)  # seeded


def _captions(batch, length, rng):
  """[CLS] 5..VOCAB tokens [SEP] [PAD]... with 10-40 real tokens."""
  ids = np.zeros((batch, length), np.int32)
  for row in range(batch):
    n = rng.integers(10, 41)
    ids[row, 0] = 2
    ids[row, 1:n + 1] = rng.integers(5, VOCAB, n)
    ids[row, n + 1] = 3
  return ids


def test_word_masking_statistics():
  rng = np.random.default_rng(0)
  input_ids = jnp.asarray(_captions(512, 64, rng))
  mask = jax.jit(functools.partial(
      masking.mask_tokens, vocab_size=VOCAB, special_ids=SPECIAL_IDS, mask_id=MASK_ID,
      prob=0.15, mask_frac=0.8, random_frac=0.1, max_predictions=64))
  out = mask(jax.random.key(1), input_ids)
  ids, masked_ids = np.asarray(input_ids), np.asarray(out.input_ids)
  chosen = np.asarray(out.full_labels) >= 0
  regular = ~np.isin(ids, SPECIAL_IDS)
  assert not (chosen & ~regular).any()  # never [CLS], [SEP] or [PAD]
  np.testing.assert_array_equal(masked_ids[~chosen], ids[~chosen])
  np.testing.assert_array_equal(np.asarray(out.full_labels)[chosen], ids[chosen])
  assert abs(chosen.sum() / regular.sum() - 0.15) < 0.01
  to_mask = (masked_ids == MASK_ID) & chosen
  kept = (masked_ids == ids) & chosen
  random = chosen & ~to_mask & ~kept
  n = chosen.sum()
  assert abs(to_mask.sum() / n - 0.8) < 0.03
  assert abs(random.sum() / n - 0.1) < 0.03
  assert abs(kept.sum() / n - 0.1) < 0.03  # (a random token equal to the original counts here)
  assert (masked_ids[random] >= 5).all()  # random tokens are regular ones
  # Gathered view: the same positions and labels.
  weights = np.asarray(out.weights).astype(bool)
  assert weights.sum() == n
  positions = np.asarray(out.positions)
  for row in range(8):
    np.testing.assert_array_equal(np.sort(positions[row][weights[row]]), np.flatnonzero(chosen[row]))
  # Seeded: same key, same masks; another key, other masks.
  np.testing.assert_array_equal(np.asarray(mask(jax.random.key(1), input_ids).input_ids), masked_ids)
  assert not np.array_equal(np.asarray(mask(jax.random.key(2), input_ids).input_ids), masked_ids)


def test_word_masking_caps_predictions_per_sequence():
  input_ids = jnp.asarray(_captions(64, 48, np.random.default_rng(3)))
  out = masking.mask_tokens(jax.random.key(0), input_ids, vocab_size=VOCAB,
                            special_ids=SPECIAL_IDS, mask_id=MASK_ID, prob=0.9, mask_frac=0.8,
                            random_frac=0.1, max_predictions=5)
  chosen = np.asarray(out.full_labels) >= 0
  assert chosen.sum(axis=1).max() == 5
  assert out.positions.shape == (64, 5)
  np.testing.assert_array_equal(np.asarray(out.weights).sum(axis=1), chosen.sum(axis=1))
