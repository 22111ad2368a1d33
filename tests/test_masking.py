"""On-device masking: image grid units and BERT-style word masking statistics."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mvlt_jax import masking

SPECIAL_IDS = (0, 1, 2, 3, 4)  # [PAD], [UNK], [CLS], [SEP], [MASK]
MASK_ID = 4
VOCAB = 1000


def test_image_grid_masks_exactly_the_ratio_of_units():
  images = jnp.asarray(np.random.default_rng(0).uniform(0.1, 1.0, (6, 64, 64, 3)), jnp.float32)
  masked, cells = jax.jit(
      functools.partial(masking.mask_image_grid, unit=16, ratio=0.5, fill=1e-6)
  )(jax.random.key(0), images)
  assert cells.shape == (6, 4, 4)
  np.testing.assert_array_equal(cells.sum(axis=(1, 2)), 8)  # 50% of 16 units, every image
  pixel = np.repeat(np.repeat(np.asarray(cells), 16, 1), 16, 2)[..., None]
  masked = np.asarray(masked)
  np.testing.assert_array_equal(masked[np.broadcast_to(pixel, masked.shape)], np.float32(1e-6))
  np.testing.assert_array_equal(
      masked[~np.broadcast_to(pixel, masked.shape)],
      np.asarray(images)[~np.broadcast_to(pixel, masked.shape)],
  )
  assert not np.array_equal(cells[0], cells[1])  # different units per image
  _, again = masking.mask_image_grid(jax.random.key(0), images, unit=16, ratio=0.5, fill=1e-6)
  np.testing.assert_array_equal(cells, again)  # seeded


def _release_grid_masks(count: int, rng: np.random.Generator) -> np.ndarray:
  """The release's ``generate_grid_mask`` as ARCHITECTURE.md describes it, in numpy: shuffle
  128 ones and 128 zeros, row i of the 16x16 unit grid = the window [i : i + 16]."""
  masks = np.empty((count, 16, 16), bool)
  for n in range(count):
    values = np.array([1] * 128 + [0] * 128)
    rng.shuffle(values)
    masks[n] = [values[i : i + 16] for i in range(16)]
  return masks


def _share_statistics(masks: np.ndarray) -> dict[str, float]:
  share = masks.mean(axis=(1, 2))
  rows = masks.mean(axis=2)  # [N, 16] masked share of each row
  adjacent = np.corrcoef(rows[:, :-1].ravel(), rows[:, 1:].ravel())[0, 1]
  return dict(
      mean=share.mean(), std=share.std(), min=share.min(), max=share.max(), row_correlation=adjacent
  )


def test_release_grid_mask_distribution_matches_the_releases_generator():
  """2,000 draws of 16x16 units (256x256 images): the same mean, spread and row correlation
  as the release's generator (mean 0.50, std ~0.095, range ~0.15-0.81)."""
  count = 2000
  ours = np.asarray(
      jax.jit(
          functools.partial(
              masking.grid_cell_mask,
              batch=count,
              rows=16,
              cols=16,
              ratio=0.5,
              distribution='release',
          )
      )(jax.random.key(3))
  )
  reference = _release_grid_masks(count, np.random.default_rng(0))
  got, want = _share_statistics(ours), _share_statistics(reference)
  assert abs(got['mean'] - 0.5) < 0.01 and abs(want['mean'] - 0.5) < 0.01
  assert abs(got['std'] - want['std']) < 0.05 * want['std'], (got, want)
  assert 0.08 < got['std'] < 0.11
  assert abs(got['row_correlation'] - want['row_correlation']) < 0.05 * want['row_correlation']
  assert got['row_correlation'] > 0.8  # adjacent rows share 15 of their 16 entries
  assert got['min'] < 0.3 and got['max'] > 0.7  # the share varies a lot per image
  exact = np.asarray(masking.grid_cell_mask(jax.random.key(3), 200, 16, 16, ratio=0.5))
  np.testing.assert_array_equal(exact.sum(axis=(1, 2)), 128)  # 'exact': always half
  assert _share_statistics(exact)['row_correlation'] < 0.1
  from mvlt_jax.errors import ConfigError  # pylint: disable=import-outside-toplevel

  with pytest.raises(ConfigError, match='image_distribution'):
    masking.grid_cell_mask(jax.random.key(3), 2, 16, 16, ratio=0.5, distribution='windows')


def _captions(batch, length, rng):
  """[CLS] 5..VOCAB tokens [SEP] [PAD]... with 10-40 real tokens."""
  ids = np.zeros((batch, length), np.int32)
  for row in range(batch):
    n = rng.integers(10, 41)
    ids[row, 0] = 2
    ids[row, 1 : n + 1] = rng.integers(5, VOCAB, n)
    ids[row, n + 1] = 3
  return ids


def test_word_masking_statistics():
  rng = np.random.default_rng(0)
  input_ids = jnp.asarray(_captions(512, 64, rng))
  mask = jax.jit(
      functools.partial(
          masking.mask_tokens,
          vocab_size=VOCAB,
          special_ids=SPECIAL_IDS,
          mask_id=MASK_ID,
          prob=0.15,
          mask_frac=0.8,
          random_frac=0.1,
          max_predictions=64,
      )
  )
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
    np.testing.assert_array_equal(
        np.sort(positions[row][weights[row]]), np.flatnonzero(chosen[row])
    )
  # Seeded: same key, same masks; another key, other masks.
  np.testing.assert_array_equal(
      np.asarray(mask(jax.random.key(1), input_ids).input_ids), masked_ids
  )
  assert not np.array_equal(np.asarray(mask(jax.random.key(2), input_ids).input_ids), masked_ids)


def test_word_masking_caps_predictions_per_sequence():
  input_ids = jnp.asarray(_captions(64, 48, np.random.default_rng(3)))
  out = masking.mask_tokens(
      jax.random.key(0),
      input_ids,
      vocab_size=VOCAB,
      special_ids=SPECIAL_IDS,
      mask_id=MASK_ID,
      prob=0.9,
      mask_frac=0.8,
      random_frac=0.1,
      max_predictions=5,
  )
  chosen = np.asarray(out.full_labels) >= 0
  assert chosen.sum(axis=1).max() == 5
  assert out.positions.shape == (64, 5)
  np.testing.assert_array_equal(np.asarray(out.weights).sum(axis=1), chosen.sum(axis=1))


def test_copies_of_an_item_get_their_own_masks():
  """Repeated sampling puts copies of an item in one batch: masks are drawn per row."""
  from mvlt_jax import steps  # pylint: disable=import-outside-toplevel
  from tests.conftest import tiny_config  # pylint: disable=import-outside-toplevel

  config = tiny_config()
  config.masking.word_prob = 0.5
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
  caption = rng.integers(5, 64, (1, 16)).astype(np.int32)
  batch = dict(
      images=jnp.asarray(np.repeat(image, 3, 0)), input_ids=jnp.asarray(np.repeat(caption, 3, 0))
  )
  spec = masking.TokenSpec(64, SPECIAL_IDS, MASK_ID)
  inputs = steps.make_pretrain_inputs(jax.random.key(0), batch, jnp.ones((), bool), config, spec)
  cells = np.asarray(inputs['cell_mask'])
  chosen = np.asarray(inputs['tokens'].full_labels) >= 0
  for a, b in ((0, 1), (0, 2), (1, 2)):
    assert not np.array_equal(cells[a], cells[b])
    assert not np.array_equal(chosen[a], chosen[b])
