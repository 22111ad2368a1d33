"""AdamW with the release's recipe: warm-up, cosine over the absolute epoch, decay groups."""

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from mvlt_jax.errors import ConfigError

# optimizer.weight_decay_groups: which parameters are decayed.
# 'release': timm's ``add_weight_decay`` as the release uses it: everything except 1-D
#   parameters and names ending in 'bias', so the visual and text position embeddings, the
#   three text embedding tables and the convolution kernels decay (MVLT defines no
#   ``no_weight_decay``).
# 'pvt': as 'release', but the position embeddings are not decayed (PVT's own
#   ``no_weight_decay``, which MVLT's release does not carry over).
WEIGHT_DECAY_GROUPS = ('release', 'pvt')
POSITION_EMBEDDING_PREFIXES = ('pos_embed', 'text_pos_embed')

# optimizer.lr_schedule_unit: how often the learning rate changes.
# 'step': the release's curve evaluated at every step (epoch = step / steps_per_epoch).
# 'release_epoch': as the release runs timm's scheduler: constant within an epoch and one
#   epoch late (``scheduler.step(epoch)`` after epoch e, so epoch e runs at lr(e - 1), epoch 0
#   and 1 at lr(0)).
LR_SCHEDULE_UNITS = ('step', 'release_epoch')


def learning_rate_schedule(
    optimizer_config, global_batch_size: int, steps_per_epoch: int, total_steps: int
) -> optax.Schedule:
  """timm's ``CosineLRScheduler`` as the release configures it, over epochs ``t``:

  ``t < warmup``: linear from ``warmup_init_lr`` to the peak (``base_learning_rate`` x
  ``global_batch_size / base_batch_size``); after: ``final_lr + (peak - final_lr) (1 +
  cos(pi t / T)) / 2`` over the absolute epoch (the warm-up epochs count), ``T`` = the run's
  epochs (``total_steps / steps_per_epoch``); ``final_lr`` after ``T``.
  """
  unit = optimizer_config.get('lr_schedule_unit', 'step')
  if unit not in LR_SCHEDULE_UNITS:
    raise ConfigError(
        f'config.optimizer.lr_schedule_unit={unit!r}; use one of ' f'{LR_SCHEDULE_UNITS}.'
    )
  peak = optimizer_config.base_learning_rate * global_batch_size / optimizer_config.base_batch_size
  warmup_init = optimizer_config.warmup_init_lr
  final = min(optimizer_config.final_lr, peak)
  warmup_epochs = float(optimizer_config.warmup_epochs)
  steps_per_epoch = max(int(steps_per_epoch), 1)
  total_epochs = max(total_steps / steps_per_epoch, 1e-9)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    if unit == 'step':
      epoch = step / steps_per_epoch
    else:
      epoch = jnp.maximum(jnp.floor(step / steps_per_epoch) - 1.0, 0.0)
    warm = warmup_init + epoch * (peak - warmup_init) / max(warmup_epochs, 1e-9)
    cosine = final + 0.5 * (peak - final) * (1.0 + jnp.cos(jnp.pi * epoch / total_epochs))
    cosine = jnp.where(epoch >= total_epochs, final, cosine)
    return jnp.where(epoch < warmup_epochs, warm, cosine)

  return schedule


def weight_decay_mask(params, groups: str = 'release'):
  """True for the leaves that weight decay applies to (see ``WEIGHT_DECAY_GROUPS``)."""
  if groups not in WEIGHT_DECAY_GROUPS:
    raise ConfigError(
        f'config.optimizer.weight_decay_groups={groups!r}; use one of ' f'{WEIGHT_DECAY_GROUPS}.'
    )
  flat = traverse_util.flatten_dict(params)

  def decays(path, leaf) -> bool:
    if leaf.ndim <= 1 or path[-1].endswith('bias'):
      return False
    return not (groups == 'pvt' and path[-1].startswith(POSITION_EMBEDDING_PREFIXES))

  return traverse_util.unflatten_dict({path: decays(path, leaf) for path, leaf in flat.items()})


def make_optimizer(optimizer_config, schedule: optax.Schedule) -> optax.GradientTransformation:
  groups = optimizer_config.get('weight_decay_groups', 'release')
  adamw = optax.adamw(
      schedule,
      b1=optimizer_config.b1,
      b2=optimizer_config.b2,
      eps=optimizer_config.eps,
      weight_decay=optimizer_config.weight_decay,
      mask=lambda params: weight_decay_mask(params, groups),
  )
  if optimizer_config.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(optimizer_config.grad_clip_norm), adamw)
  return adamw


def global_norm(tree) -> jax.Array:
  """L2 norm over all leaves (``optax.tree.norm``; older optax: ``optax.global_norm``)."""
  tree_utils = getattr(optax, 'tree', None)
  if tree_utils is not None and hasattr(tree_utils, 'norm'):
    return tree_utils.norm(tree)
  return optax.global_norm(tree)
