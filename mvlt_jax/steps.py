"""Pure training and evaluation steps (jit'd by the caller; no TensorFlow, no host I/O).

A training batch holds ``images`` uint8 [B, H, W, 3], ``input_ids`` int32 [B, L],
``itm_labels`` int32 [B], for recognition ``main_labels`` / ``sub_labels`` int32 [B], and for
the attribute heads ``caption_attribute_labels`` / ``image_attribute_labels`` int32 [B, K].
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from mvlt_jax import losses, masking, optim
from mvlt_jax.errors import ConfigError
from mvlt_jax.models.mvlt import ATTRIBUTE_LABELS, HEAD_NAMES
from mvlt_jax.train_state import TrainState

Batch = dict[str, jax.Array]


def images_to_float(images: jax.Array) -> jax.Array:
  """uint8 [B, H, W, 3] -> float32 in [0, 1] (float inputs pass through)."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


LOSS_SCHEDULES = ('alternate', 'sum')


def feeds_masked_image(step: jax.Array, loss_schedule: str) -> jax.Array:
  """Whether ``step`` feeds the masked image: always (``sum``, the paper) or on odd steps
  (``alternate``, the release: even steps feed the unmasked image)."""
  if loss_schedule == 'alternate':
    return step % 2 == 1
  if loss_schedule == 'sum':
    return jnp.ones((), bool)
  raise ConfigError(f'config.loss_schedule={loss_schedule!r}; use one of {LOSS_SCHEDULES}.')


def make_pretrain_inputs(
    rng: jax.Array, batch: Batch, feed_masked: jax.Array, config, token_spec: masking.TokenSpec
) -> dict[str, Any]:
  """Masks images and words of a batch as the pre-training recipe says; the model is fed the
  masked image where ``feed_masked`` (a bool scalar) holds, else the unmasked one."""
  image_rng, word_rng = jax.random.split(rng)
  images = images_to_float(batch['images'])
  masked_images, cell_mask = masking.mask_image_grid(
      image_rng,
      images,
      unit=config.masking.image_unit,
      ratio=config.masking.image_ratio,
      fill=config.masking.image_fill,
      distribution=config.masking.get('image_distribution', 'exact'),
  )
  feed = jnp.where(feed_masked, masked_images, images)
  tokens = masking.mask_tokens(
      word_rng,
      batch['input_ids'],
      vocab_size=token_spec.vocab_size,
      special_ids=token_spec.special_ids,
      mask_id=token_spec.mask_id,
      prob=config.masking.word_prob,
      mask_frac=config.masking.word_mask_frac,
      random_frac=config.masking.word_random_frac,
      max_predictions=config.masking.mlm_max_predictions,
  )
  return dict(images=images, feed=feed, cell_mask=cell_mask, tokens=tokens)


def compute_losses(outputs: dict, batch: Batch, inputs: dict, config) -> dict[str, jax.Array]:
  """The weighted losses of whatever heads the model has; ``total`` is their sum."""
  weights = config.loss_weights
  terms = {}
  if 'reconstruction' in outputs:
    terms['mir'] = losses.reconstruction_loss(outputs['reconstruction'], inputs['images'])
  if 'itm_logits' in outputs:
    terms['itm'] = losses.classification_loss(outputs['itm_logits'], batch['itm_labels'])
  if 'mlm_logits' in outputs:
    tokens = inputs['tokens']
    if config.masking.mlm_max_predictions > 0:
      terms['mlm'] = losses.mlm_loss(outputs['mlm_logits'], tokens.labels, tokens.weights)
    else:
      terms['mlm'] = losses.mlm_loss_full(outputs['mlm_logits'], tokens.full_labels)
  if 'main_logits' in outputs:
    terms['recognition'] = losses.classification_loss(
        outputs['main_logits'], batch['main_labels']
    ) + losses.classification_loss(outputs['sub_logits'], batch['sub_labels'])
  if 'caption_attribute_logits' in outputs:
    terms['attributes'] = sum(
        losses.classification_loss(logits, batch[label_key][:, index])
        for side, label_key in ATTRIBUTE_LABELS.items()
        for index, logits in enumerate(outputs[f'{side}_attribute_logits'])
    )
  total = sum(weights[name] * value for name, value in terms.items())
  return {**{f'loss_{name}': value for name, value in terms.items()}, 'loss': total}


def is_pretraining(model) -> bool:
  return any(head in model.heads for head in ('mlm', 'mir'))


def model_inputs(
    rng: jax.Array,
    batch: Batch,
    feed_masked: jax.Array,
    config,
    token_spec: masking.TokenSpec,
    pretraining: bool,
):
  """``(inputs, images fed, input_ids fed, MLM positions or None)`` of a batch.

  Pre-training masks images and words (``make_pretrain_inputs``); fine-tuning feeds the
  batch as it is.
  """
  if not pretraining:
    inputs = dict(images=images_to_float(batch['images']))
    return inputs, inputs['images'], batch['input_ids'], None
  inputs = make_pretrain_inputs(rng, batch, feed_masked, config, token_spec)
  positions = inputs['tokens'].positions if config.masking.mlm_max_predictions > 0 else None
  return inputs, inputs['feed'], inputs['tokens'].input_ids, positions


def make_train_step(
    model,
    config,
    token_spec: masking.TokenSpec,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
) -> Callable[[TrainState, Batch], tuple]:
  """Returns ``train_step(state, batch) -> (new_state, metrics)``, a pure function."""
  pretraining = is_pretraining(model)

  def train_step(state: TrainState, batch: Batch):
    step_rng = jax.random.fold_in(state.key, state.step)
    mask_rng, dropout_rng = jax.random.split(step_rng)
    inputs, feed, input_ids, positions = model_inputs(
        mask_rng,
        batch,
        feeds_masked_image(state.step, config.loss_schedule),
        config,
        token_spec,
        pretraining,
    )

    def loss_fn(params):
      outputs, new_model_state = model.apply(
          {'params': params, 'batch_stats': state.batch_stats},
          feed,
          input_ids,
          train=True,
          mlm_positions=positions,
          rngs={'dropout': dropout_rng},
          mutable=['batch_stats'],
      )
      loss_terms = compute_losses(outputs, batch, inputs, config)
      return loss_terms['loss'], (loss_terms, new_model_state)

    grads, (loss_terms, new_model_state) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        batch_stats=new_model_state.get('batch_stats', state.batch_stats),
        opt_state=opt_state,
    )
    metrics = dict(
        loss_terms, grad_norm=optim.global_norm(grads), learning_rate=schedule(state.step)
    )
    return new_state, metrics

  return train_step


# Validation metrics of the release's best-checkpoint rule (ARCHITECTURE.md, "Checkpoint kept
# by the release"): MLM accuracy with the clean image (masked caption) plus ITM accuracy with
# the clean image and the clean caption; ``release_score`` is their sum.
RELEASE_METRICS = ('clean_mlm_accuracy', 'clean_itm_accuracy', 'release_score')


# The metrics that each head of ``HEAD_NAMES`` adds to ``make_eval_step``'s, besides ``loss``
# (tests/test_convert.py checks that every head has its entry).
_HEAD_METRICS = {
    'mir': ('loss_mir',),
    'itm': ('loss_itm', 'itm_accuracy'),
    'mlm': ('loss_mlm', 'mlm_accuracy'),
    'recognition': ('loss_recognition', 'main_accuracy', 'sub_accuracy'),
    'attributes': ('loss_attributes',),
}


def eval_metric_names(heads, release_metrics: bool = False) -> set[str]:
  """The keys of ``make_eval_step``'s metrics for a model with ``heads``."""
  unknown = sorted(set(heads) - set(HEAD_NAMES))
  if unknown:
    raise ConfigError(f'Unknown heads {unknown}; known: {HEAD_NAMES}.')
  names = {'loss'}
  for head in heads:
    names.update(_HEAD_METRICS[head])
  if release_metrics and {'mlm', 'itm'} <= set(heads):
    names.update(RELEASE_METRICS)
  return names


def _mlm_accuracy(outputs: dict, tokens: masking.MaskedTokens, config) -> jax.Array:
  """Share of the masked words predicted right."""
  predicted = jnp.argmax(outputs['mlm_logits'], -1)
  if config.masking.mlm_max_predictions > 0:
    labels, weights = tokens.labels, tokens.weights  # [B, P]
  else:
    labels, weights = tokens.full_labels, (tokens.full_labels >= 0).astype(jnp.float32)
  return jnp.sum((predicted == labels) * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def make_eval_step(
    model, config, token_spec: masking.TokenSpec, release_metrics: bool = False
) -> Callable:
  """Returns ``eval_step(variables, batch, rng) -> metrics``, a pure function.

  The losses of the training step without dropout or parameter updates, on the masked
  image for pre-training models (what MIR is scored on) and masks drawn from ``rng``; plus
  ``itm_accuracy``, ``mlm_accuracy`` and, for recognition models, ``main_accuracy`` /
  ``sub_accuracy``. With ``release_metrics`` (pre-training models with MLM and ITM) also
  ``RELEASE_METRICS``, from two more forward passes with the clean image.
  """
  pretraining = is_pretraining(model)
  release_metrics = release_metrics and {'mlm', 'itm'} <= set(model.heads)

  def eval_step(variables, batch: Batch, rng: jax.Array) -> dict[str, jax.Array]:
    inputs, feed, input_ids, positions = model_inputs(
        rng, batch, jnp.ones((), bool), config, token_spec, pretraining
    )
    outputs = model.apply(variables, feed, input_ids, train=False, mlm_positions=positions)
    metrics = compute_losses(outputs, batch, inputs, config)
    for logits, labels, name in (
        ('itm_logits', 'itm_labels', 'itm_accuracy'),
        ('main_logits', 'main_labels', 'main_accuracy'),
        ('sub_logits', 'sub_labels', 'sub_accuracy'),
    ):
      if logits in outputs:
        metrics[name] = jnp.mean(jnp.argmax(outputs[logits], -1) == batch[labels])
    if 'mlm_logits' in outputs:
      metrics['mlm_accuracy'] = _mlm_accuracy(outputs, inputs['tokens'], config)
    if release_metrics:
      clean_words = model.apply(
          variables, inputs['images'], input_ids, train=False, mlm_positions=positions
      )
      metrics['clean_mlm_accuracy'] = _mlm_accuracy(clean_words, inputs['tokens'], config)
      clean_pairs = model.apply(
          variables, inputs['images'], batch['input_ids'], train=False, mlm_positions=positions
      )
      metrics['clean_itm_accuracy'] = jnp.mean(
          jnp.argmax(clean_pairs['itm_logits'], -1) == batch['itm_labels']
      )
      metrics['release_score'] = metrics['clean_mlm_accuracy'] + metrics['clean_itm_accuracy']
    return metrics

  return eval_step


def make_reconstruct_step(model, config) -> Callable:
  """``(variables, images uint8, rng) -> (masked float images, reconstruction)`` for pictures."""

  def reconstruct(variables, images, input_ids, rng):
    images = images_to_float(images)
    masked, _ = masking.mask_image_grid(
        rng,
        images,
        unit=config.masking.image_unit,
        ratio=config.masking.image_ratio,
        fill=config.masking.image_fill,
        distribution=config.masking.get('image_distribution', 'exact'),
    )
    outputs = model.apply(variables, masked, input_ids, train=False)
    return masked, jnp.clip(outputs['reconstruction'], 0.0, 1.0)

  return reconstruct
