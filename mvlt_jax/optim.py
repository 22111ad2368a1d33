"""AdamW with the release's recipe: linear warm-up, cosine decay, decay on weight matrices only."""
import jax
import optax
from flax import traverse_util

# Leaves that get weight decay: Linear/conv kernels and the embedding tables. Biases, norm
# scales, the heads' second biases and the position embeddings (PVT's ``no_weight_decay``)
# are not decayed.
DECAYED_LEAF_NAMES = ('kernel', 'embedding')


def learning_rate_schedule(optimizer_config, global_batch_size: int, steps_per_epoch: int,
                           total_steps: int) -> optax.Schedule:
  """Warm-up from ``warmup_init_lr`` to the scaled peak, then cosine down to ``final_lr``."""
  peak = optimizer_config.base_learning_rate * global_batch_size / optimizer_config.base_batch_size
  warmup_steps = min(int(optimizer_config.warmup_epochs * steps_per_epoch), total_steps)
  warmup = optax.linear_schedule(optimizer_config.warmup_init_lr, peak, max(warmup_steps, 1))
  decay_steps = max(total_steps - warmup_steps, 1)
  cosine = optax.cosine_decay_schedule(peak, decay_steps,
                                       alpha=min(optimizer_config.final_lr / peak, 1.0))
  return optax.join_schedules([warmup, cosine], [warmup_steps])


def weight_decay_mask(params):
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({path: path[-1] in DECAYED_LEAF_NAMES for path in flat})


def make_optimizer(optimizer_config, schedule: optax.Schedule) -> optax.GradientTransformation:
  adamw = optax.adamw(schedule, b1=optimizer_config.b1, b2=optimizer_config.b2,
                      eps=optimizer_config.eps, weight_decay=optimizer_config.weight_decay,
                      mask=weight_decay_mask)
  if optimizer_config.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(optimizer_config.grad_clip_norm), adamw)
  return adamw


def global_norm(tree) -> jax.Array:
  """L2 norm over all leaves (``optax.tree.norm``; older optax: ``optax.global_norm``)."""
  tree_utils = getattr(optax, 'tree', None)
  if tree_utils is not None and hasattr(tree_utils, 'norm'):
    return tree_utils.norm(tree)
  return optax.global_norm(tree)
