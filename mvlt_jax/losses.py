"""Pre-training and fine-tuning losses (computed in float32)."""

import jax
import jax.numpy as jnp
import optax


def weighted_cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
  """Mean cross-entropy over the entries with weight 1 (0 when there are none)."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def mlm_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
  """MLM loss at gathered positions: logits [B, P, V], labels / weights [B, P]."""
  return weighted_cross_entropy(logits, labels, weights)


def mlm_loss_full(logits: jax.Array, full_labels: jax.Array) -> jax.Array:
  """MLM loss over all positions with label -1 ignored: logits [B, L, V], labels [B, L]."""
  weights = (full_labels >= 0).astype(jnp.float32)
  return weighted_cross_entropy(logits, jnp.maximum(full_labels, 0), weights)


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean cross-entropy: ITM (label 1 = matched) and the recognition heads."""
  return weighted_cross_entropy(logits, labels, jnp.ones(labels.shape, jnp.float32))


def reconstruction_loss(reconstruction: jax.Array, images: jax.Array) -> jax.Array:
  """SmoothL1 (beta 1, i.e. Huber with delta 1) over all pixels and channels."""
  diff = reconstruction.astype(jnp.float32) - images.astype(jnp.float32)
  return jnp.mean(optax.huber_loss(diff, delta=1.0))
