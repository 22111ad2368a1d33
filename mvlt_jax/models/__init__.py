"""The MVLT model in Flax linen (importable without TensorFlow)."""

import jax
import jax.numpy as jnp

from mvlt_jax.models.mvlt import HEAD_NAMES, MVLT
from mvlt_jax.models.variants import VARIANTS, PyramidSpec, resolve_pyramid

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


def compute_dtype(name: str):
  if name not in _DTYPES:
    raise ValueError(f'Unknown model.dtype {name!r}; choose one of {sorted(_DTYPES)}.')
  return _DTYPES[name]


# model.word_embedding_grad: how the word table's gradient is computed. 'scatter' is XLA's
# scatter-add (the gradient of a gather); 'one_hot' a one-hot matrix product
# (layers.lookup). Same values; 'auto' picks by the backend. The GPU choice was measured
# while [PAD] positions still added gradient (docs/performance.md): to be re-measured now that
# they do not.
_WORD_GRAD_AUTO = {'gpu': 'one_hot'}  # measured on H100 / H200 (docs/performance.md)


def word_embedding_grad(model_config, backend: str = '') -> str:
  """The resolved ``model.word_embedding_grad`` ('scatter' | 'one_hot') on ``backend``."""
  choice = model_config.get('word_embedding_grad', 'auto')
  if choice == 'auto':
    return _WORD_GRAD_AUTO.get(backend or jax.default_backend(), 'scatter')
  if choice not in ('scatter', 'one_hot'):
    raise ValueError(
        f'Unknown model.word_embedding_grad {choice!r}; choose auto, scatter ' 'or one_hot.'
    )
  return choice


# model.remat_policy: what a rematerialised block (model.remat=True) keeps from its forward
# pass; the rest is recomputed in the backward pass. '' keeps nothing (the whole block is
# recomputed); the others are jax.checkpoint_policies of that name: 'dots_saveable' keeps
# every matrix product's output, 'dots_with_no_batch_dims_saveable' only those without batch
# dimensions (the dense layers, not XLA attention's score products). Element-wise work
# (LayerNorm, GELU, residual adds) is recomputed under all of them.
REMAT_POLICIES = ('', 'dots_saveable', 'dots_with_no_batch_dims_saveable')


def remat_policy(model_config) -> str:
  """The checked ``model.remat_policy`` ('' when the config predates the option)."""
  name = model_config.get('remat_policy', '')
  if name not in REMAT_POLICIES:
    raise ValueError(
        f'Unknown model.remat_policy {name!r}; choose one of {list(REMAT_POLICIES)} '
        "('' recomputes the whole block)."
    )
  return name


def build_model(model_config, **overrides) -> MVLT:
  """The MVLT module described by ``config.model`` (an ml_collections ConfigDict)."""
  spec = resolve_pyramid(model_config)
  kwargs = dict(
      embed_dims=spec.embed_dims,
      num_heads=spec.num_heads,
      mlp_ratios=spec.mlp_ratios,
      depths=spec.depths,
      sr_ratios=spec.sr_ratios,
      text_length=model_config.text_length,
      vocab_size=model_config.vocab_size,
      pos_grid_size=model_config.pos_grid_size,
      text_max_positions=model_config.text_max_positions,
      type_vocab_size=model_config.type_vocab_size,
      text_width=model_config.text_width,
      head_width=model_config.head_width,
      heads=tuple(model_config.heads),
      num_main_classes=model_config.num_main_classes,
      num_sub_classes=model_config.num_sub_classes,
      mir_channels=model_config.mir_channels,
      bn_momentum=model_config.bn_momentum,
      drop_path_rate=model_config.drop_path_rate,
      text_dropout_rate=model_config.text_dropout_rate,
      stage_dropout_rate=model_config.stage_dropout_rate,
      dtype=compute_dtype(model_config.dtype),
      attention_impl=model_config.get('attention_impl') or None,
      remat=model_config.remat,
      remat_policy=remat_policy(model_config),
      attention_init_std=model_config.get('attention_init_std', 0.02),
      word_grad_impl=word_embedding_grad(model_config),
      padding_idx=int(model_config.get('word_padding_idx', 0)),
      word_init_std=model_config.get('word_init_std'),
      attribute_classes=tuple(model_config.get('attribute_classes') or ()),
  )
  kwargs.update(overrides)
  return MVLT(**kwargs)


__all__ = [
    'MVLT',
    'HEAD_NAMES',
    'VARIANTS',
    'PyramidSpec',
    'REMAT_POLICIES',
    'build_model',
    'compute_dtype',
    'remat_policy',
    'resolve_pyramid',
    'word_embedding_grad',
]
