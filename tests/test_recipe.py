"""The release's pre-training recipe around the model: weight-decay groups, the learning-rate
curve, repeated sampling, the vision-initialisation warning and the recipe line."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import pretrain
from mvlt_jax import optim, summary, train, train_state
from mvlt_jax.errors import ConfigError


def _decayed(params, groups):
  mask = optim.weight_decay_mask(params, groups)
  flat = jax.tree_util.tree_leaves_with_path(mask)
  return {jax.tree_util.keystr(path) for path, decays in flat if decays}


def test_weight_decay_groups_are_the_releases():
  """timm's add_weight_decay: everything but 1-D parameters and names ending in 'bias'."""
  params = summary.abstract_variables(pretrain.model_config())['params']
  decayed = _decayed(params, 'release')
  name = lambda *path: ''.join(f"['{p}']" for p in path)
  for path in (
      ('pos_embed1',),
      ('pos_embed4',),
      ('text_pos_embed2',),
      ('text_embeddings', 'word_embeddings', 'embedding'),
      ('text_embeddings', 'position_embeddings', 'embedding'),
      ('text_embeddings', 'token_type_embeddings', 'embedding'),
      ('patch_embed1', 'proj', 'kernel'),
      ('block1', '0', 'attn', 'sr', 'kernel'),
      ('block2', '1', 'mlp', 'fc1', 'kernel'),
      ('t2i_head', 'conv4', '0', 'kernel'),
  ):
    assert name(*path) in decayed, path
  for path in (
      ('patch_embed1', 'proj', 'bias'),
      ('patch_embed1', 'norm', 'scale'),
      ('block1', '0', 'norm1', 'scale'),
      ('itm_head', 'linear_bias'),
      ('mlm_head', 'bias'),
      ('t2i_head', 'conv4', '1', 'scale'),
      ('text_embeddings', 'LayerNorm', 'scale'),
  ):
    assert name(*path) not in decayed, path
  flat = jax.tree_util.tree_leaves_with_path(params)
  for path, leaf in flat:  # the rule itself, leaf by leaf
    key = jax.tree_util.keystr(path)
    assert (key in decayed) == (leaf.ndim > 1 and not key.endswith("bias']")), key
  pvt = _decayed(params, 'pvt')
  assert decayed - pvt == {
      name(f'{p}{k}') for p in ('pos_embed', 'text_pos_embed') for k in range(1, 5)
  }
  with pytest.raises(ConfigError, match='weight_decay_groups'):
    optim.weight_decay_mask(params, 'timm')


def _schedule(unit, steps_per_epoch=10, epochs=150):
  config = pretrain.get_config().optimizer
  config.lr_schedule_unit = unit
  return optim.learning_rate_schedule(config, 512, steps_per_epoch, epochs * steps_per_epoch)


def _timm_lr(epoch, peak=2.5e-4, warmup=5, warmup_init=1e-6, final=1e-5, total=150):
  """timm's CosineLRScheduler (warmup_prefix False) as the release configures it."""
  if epoch < warmup:
    return warmup_init + epoch * (peak - warmup_init) / warmup
  return final + 0.5 * (peak - final) * (1 + math.cos(math.pi * epoch / total))


def test_learning_rate_follows_timms_curve_per_step_or_per_epoch_late():
  per_step, release = _schedule('step'), _schedule('release_epoch')
  for epoch in (0, 1, 2.5, 4.9, 5, 6, 50, 99.3, 149):
    np.testing.assert_allclose(float(per_step(int(epoch * 10))), _timm_lr(epoch), rtol=1e-5)
  # The release: constant within an epoch, lr(e - 1) during epoch e, lr(0) in epochs 0 and 1.
  for epoch in (0, 1, 2, 5, 6, 100, 149):
    expected = _timm_lr(max(epoch - 1, 0))
    for step in (epoch * 10, epoch * 10 + 9):
      np.testing.assert_allclose(float(release(step)), expected, rtol=1e-5)
  np.testing.assert_allclose(float(per_step(1500)), 1e-5, rtol=1e-5)  # the end: final_lr
  assert float(jnp.max(jax.vmap(per_step)(jnp.arange(1500)))) <= 2.5e-4 * (1 + 1e-6)
  with pytest.raises(ConfigError, match='lr_schedule_unit'):
    _schedule('epoch')


def test_repeated_sampling_order_is_the_releases():
  """Each record k times in a row, an epoch of N entries over about N / k records."""
  from input_pipeline import pipeline  # pylint: disable=import-outside-toplevel

  order = pipeline.epoch_order(seed=3, epoch=2, num_examples=100, repeats=3)
  assert order.shape == (100,)
  groups = order.reshape(-1)[:99].reshape(33, 3)
  assert np.all(groups == groups[:, :1])  # three copies side by side
  assert len(np.unique(order)) == 34
  permutation = pipeline.epoch_order(3, 2, 100, repeats=1)
  np.testing.assert_array_equal(np.sort(permutation), np.arange(100))  # a permutation
  np.testing.assert_array_equal(order[::3], permutation[:34])  # its first ceil(N/3) records
  assert not np.array_equal(order, pipeline.epoch_order(3, 3, 100, repeats=3))
  with pytest.raises(pipeline.PipelineConfigError, match='repeats'):
    pipeline.epoch_order(3, 2, 100, repeats=0)


def test_vision_from_scratch_is_said_in_one_line(capsys):
  config = pretrain.get_config()
  train_state.warn_if_vision_from_scratch(config, set())
  out = capsys.readouterr().out.strip().splitlines()
  assert len(out) == 1 and 'Table 4' in out[0] and 'R@5' in out[0]
  assert out[0].startswith('warning:')
  train_state.warn_if_vision_from_scratch(config, {'patch_embed1', 'block1'})
  assert capsys.readouterr().out == ''
  config.pretrained_vision_expected = False
  train_state.warn_if_vision_from_scratch(config, set())
  assert capsys.readouterr().out == ''


def test_recipe_line_names_every_choice():
  line = train.recipe_summary(pretrain.get_config())
  for part in (
      'loss_schedule=alternate',
      'image_mask=release',
      'repeated_sampling=3',
      'word_padding_idx=0',
      'word_init_std=release',
      'weight_decay=0.01/release',
      'lr_schedule_unit=step',
      'best=release_score/max from 67%',
      'init_from=none',
  ):
    assert part in line, (part, line)


def test_unknown_loss_schedule_is_a_config_error():
  from mvlt_jax import steps  # pylint: disable=import-outside-toplevel

  assert bool(steps.feeds_masked_image(jnp.asarray(3), 'alternate'))
  assert not bool(steps.feeds_masked_image(jnp.asarray(4), 'alternate'))
  assert bool(steps.feeds_masked_image(jnp.asarray(4), 'sum'))
  with pytest.raises(ConfigError, match='loss_schedule'):
    steps.feeds_masked_image(jnp.asarray(0), 'paper')
