"""Building blocks of the pyramid vision-language transformer.

Parameter names follow the PyTorch release (see ``mvlt_jax/convert.py`` for the
mechanical name mapping): ``q``, ``kv``, ``proj``, ``sr``, ``norm``, ``fc1`` ...
"""

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

# Initialisers of the release (ARCHITECTURE.md, "Initialisation"): timm's
# ``trunc_normal_(std=0.02)`` for Linear weights, position embeddings and (through the tied
# MLM decoder, an ``nn.Linear`` whose weight is the word table) the word-embedding table; its
# bounds are the absolute +-2, i.e. +-100 std, so it is a plain N(0, 0.02^2). Zero biases.
# PyTorch's default N(0, 1) for the BERT position and token-type tables, and its default
# Kaiming-uniform for convolutions.
dense_kernel_init = nn.initializers.normal(stddev=0.02)
word_embedding_init = nn.initializers.normal(stddev=0.02)
embedding_init = nn.initializers.normal(stddev=1.0)
conv_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def conv_bias_init(fan_in: int) -> Callable:
  """PyTorch's default convolution bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def dense(
    features: int, dtype: Dtype, name: str, kernel_init: Callable = dense_kernel_init
) -> nn.Dense:
  return nn.Dense(
      features, dtype=dtype, kernel_init=kernel_init, bias_init=nn.initializers.zeros, name=name
  )


def layer_norm(epsilon: float, dtype: Dtype, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=epsilon, dtype=dtype, name=name)


class DropPath(nn.Module):
  """Stochastic depth: drops the whole residual branch per example."""

  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    keep_prob = 1.0 - self.rate
    keep = jax.random.bernoulli(
        self.make_rng('dropout'), keep_prob, (x.shape[0],) + (1,) * (x.ndim - 1)
    )
    return jnp.where(keep, x / keep_prob, jnp.zeros_like(x))


class Mlp(nn.Module):
  hidden_dim: int
  dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out_dim = x.shape[-1]
    x = dense(self.hidden_dim, self.dtype, 'fc1')(x)
    x = nn.gelu(x, approximate=False)
    return dense(out_dim, self.dtype, 'fc2')(x)


class SpatialReductionAttention(nn.Module):
  """Multi-head attention whose keys/values see the visual tokens at 1/R resolution.

  Queries come from every token. With R > 1 the visual tokens alone go through a
  strided conv + LayerNorm and are concatenated with the (unreduced) text tokens.
  """

  num_heads: int
  sr_ratio: int
  dtype: Dtype
  attention_impl: Optional[str] = None
  # Std of the q / kv / proj kernels (normal). The release's 0.02 leaves attention
  # nearly uniform at init, which is fine from PVT ImageNet weights but makes ITM from
  # scratch sit at ln 2 for a long time (see docs/training.md).
  init_std: float = 0.02

  @nn.compact
  def __call__(self, x: jax.Array, grid_hw: tuple[int, int]) -> jax.Array:
    batch, num_tokens, dim = x.shape  # [B, h*w + L, D]
    height, width = grid_hw
    num_visual = height * width
    head_dim = dim // self.num_heads
    kernel_init = nn.initializers.normal(stddev=self.init_std)
    q = dense(dim, self.dtype, 'q', kernel_init)(x)
    if self.sr_ratio > 1:
      visual_grid = x[:, :num_visual].reshape(batch, height, width, dim)
      fan_in = dim * self.sr_ratio**2
      reduced = nn.Conv(
          dim,
          (self.sr_ratio, self.sr_ratio),
          strides=self.sr_ratio,
          padding='VALID',
          dtype=self.dtype,
          kernel_init=conv_kernel_init,
          bias_init=conv_bias_init(fan_in),
          name='sr',
      )(visual_grid)
      reduced = reduced.reshape(batch, -1, dim)  # [B, h*w/R^2, D]
      reduced = layer_norm(1e-5, self.dtype, 'norm')(reduced)
      kv_input = jnp.concatenate([reduced, x[:, num_visual:]], axis=1)  # [B, M, D]
    else:
      kv_input = x
    kv = dense(2 * dim, self.dtype, 'kv', kernel_init)(kv_input)  # [B, M, 2D]: keys, then values
    k, v = kv[..., :dim], kv[..., dim:]
    split = lambda t: t.reshape(batch, t.shape[1], self.num_heads, head_dim)
    out = jax.nn.dot_product_attention(
        split(q), split(k), split(v), implementation=self.attention_impl
    )  # [B, N, H, hd]
    out = out.reshape(batch, num_tokens, dim)
    return dense(dim, self.dtype, 'proj', kernel_init)(out)


class Block(nn.Module):
  """Pre-norm transformer block with spatial-reduction attention and stochastic depth."""

  num_heads: int
  mlp_ratio: int
  sr_ratio: int
  drop_path_rate: float
  dtype: Dtype
  attention_impl: Optional[str] = None
  attention_init_std: float = 0.02

  @nn.compact
  def __call__(self, x: jax.Array, grid_hw: tuple[int, int], deterministic: bool) -> jax.Array:
    dim = x.shape[-1]
    drop_path = DropPath(self.drop_path_rate)
    y = layer_norm(1e-6, self.dtype, 'norm1')(x)
    y = SpatialReductionAttention(
        self.num_heads,
        self.sr_ratio,
        self.dtype,
        self.attention_impl,
        self.attention_init_std,
        name='attn',
    )(y, grid_hw)
    x = x + drop_path(y, deterministic)
    y = layer_norm(1e-6, self.dtype, 'norm2')(x)
    y = Mlp(dim * self.mlp_ratio, self.dtype, name='mlp')(y)
    return x + drop_path(y, deterministic)


class PatchEmbed(nn.Module):
  """Non-overlapping conv patchify, then LayerNorm: [B, H, W, C] -> [B, h*w, D]."""

  embed_dim: int
  patch_size: int
  dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, tuple[int, int]]:
    fan_in = x.shape[-1] * self.patch_size**2
    x = nn.Conv(
        self.embed_dim,
        (self.patch_size, self.patch_size),
        strides=self.patch_size,
        padding='VALID',
        dtype=self.dtype,
        kernel_init=conv_kernel_init,
        bias_init=conv_bias_init(fan_in),
        name='proj',
    )(
        x
    )  # [B, h, w, D]
    batch, height, width, dim = x.shape
    x = x.reshape(batch, height * width, dim)
    return layer_norm(1e-5, self.dtype, 'norm')(x), (height, width)


class LinearNorm(nn.Module):
  """``nn.Sequential(Linear, LayerNorm)`` of the release: children named ``0`` and ``1``."""

  features: int
  dtype: Dtype
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = dense(self.features, self.dtype, '0')(x)
    return layer_norm(self.epsilon, self.dtype, '1')(x)


WORD_GRAD_IMPLS = ('scatter', 'one_hot')


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def lookup(
    num_rows: int, padding_idx: int, grad_impl: str, table: jax.Array, ids: jax.Array
) -> jax.Array:
  """``table[ids]``: [V, D] x [B, L] -> [B, L, D], with the gradient of the release's table.

  As PyTorch's ``nn.Embedding(padding_idx=...)``, positions holding ``padding_idx`` add no
  gradient to the table (-1: every position does). ``grad_impl`` says how the table's
  gradient is formed (the same values either way):

  * ``scatter``: XLA's scatter-add of the output gradient into the looked-up rows; the
    [PAD] positions are sent out of range and dropped, so they do not pile onto one row.
  * ``one_hot``: the matrix product ``one_hot(ids).T @ grad`` [V, N] x [N, D] on the matrix
    units, summed in float32 ([PAD] positions have an all-zero one-hot row). Before [PAD]
    was excluded, the scatter-add serialised on GPUs on the [PAD] row (~19,000 of 19,200
    rows at batch 150, L=128: 67 ms of a 116 ms step on an H200, docs/performance.md),
    which this avoided (~3 ms).
  """
  del num_rows, padding_idx, grad_impl
  return jnp.take(table, ids, axis=0)


def _lookup_fwd(num_rows, padding_idx, grad_impl, table, ids):
  del num_rows, padding_idx, grad_impl
  return jnp.take(table, ids, axis=0), ids


def _lookup_bwd(num_rows, padding_idx, grad_impl, ids, grad):
  flat_ids = ids.reshape(-1)  # [N]
  flat_grad = grad.reshape(-1, grad.shape[-1])  # [N, D]
  if padding_idx >= 0:
    flat_ids = jnp.where(flat_ids == padding_idx, num_rows, flat_ids)  # out of range: no grad
  if grad_impl == 'one_hot':
    one_hot = jax.nn.one_hot(flat_ids, num_rows, dtype=flat_grad.dtype)  # [N, V]
    table_grad = jnp.einsum(
        'nv,nd->vd', one_hot, flat_grad, preferred_element_type=jnp.float32
    )  # [V, D]
  elif grad_impl == 'scatter':
    table_grad = (
        jnp.zeros((num_rows, flat_grad.shape[-1]), flat_grad.dtype)
        .at[flat_ids]
        .add(flat_grad, mode='drop')
    )  # [V, D]
  else:
    raise ValueError(f'Unknown word-table gradient {grad_impl!r}; use one of {WORD_GRAD_IMPLS}.')
  return table_grad.astype(grad.dtype), None


lookup.defvjp(_lookup_fwd, _lookup_bwd)


class TextEmbeddings(nn.Module):
  """BERT-style word + position + token-type embeddings, LayerNorm, dropout."""

  vocab_size: int
  width: int
  max_positions: int
  type_vocab_size: int
  dropout_rate: float
  dtype: Dtype
  # How the word table's gradient is formed: 'scatter' or 'one_hot' (see ``lookup``).
  word_grad_impl: str = 'scatter'
  # The [PAD] id, whose lookups add no gradient to the word table (the release's
  # ``padding_idx=0``); -1: all ids do.
  padding_idx: int = 0
  # The release's word table is N(0, 0.02^2) when the model has the MLM head (its tied
  # decoder, an nn.Linear, re-initialises it), else PyTorch's nn.Embedding default: N(0, 1)
  # with the [PAD] row zero (the recognition model).
  tied_to_decoder: bool = True
  # Overrides that rule: the word table's init std (None: the release's rule above).
  word_init_std: Optional[float] = None

  def setup(self):
    # Attribute names are the parameter names (the release's, BERT's).
    embed = lambda n, init: nn.Embed(n, self.width, dtype=self.dtype, embedding_init=init)
    if self.word_init_std is not None:
      word_init = nn.initializers.normal(stddev=self.word_init_std)
    else:
      word_init = word_embedding_init if self.tied_to_decoder else self._untied_word_init
    self.word_embeddings = embed(self.vocab_size, word_init)
    self.position_embeddings = embed(self.max_positions, embedding_init)
    self.token_type_embeddings = embed(self.type_vocab_size, embedding_init)
    self.LayerNorm = nn.LayerNorm(epsilon=1e-12, dtype=self.dtype)  # pylint: disable=invalid-name
    self.dropout = nn.Dropout(self.dropout_rate)

  def __call__(self, input_ids: jax.Array, deterministic: bool) -> jax.Array:
    length = input_ids.shape[1]
    if length > self.max_positions:
      raise ValueError(
          f'Text length {length} exceeds the {self.max_positions} ' 'position embeddings.'
      )
    positions = jnp.arange(length)[None]
    table = self.word_embeddings.embedding.astype(self.dtype)  # as nn.Embed: cast, then look up
    words = lookup(self.vocab_size, self.padding_idx, self.word_grad_impl, table, input_ids)
    x = (
        words
        + self.position_embeddings(positions)
        + self.token_type_embeddings(jnp.zeros_like(positions))
    )  # [B, L, 768]
    return self.dropout(self.LayerNorm(x), deterministic=deterministic)

  def _untied_word_init(self, key, shape, dtype=jnp.float32):
    table = embedding_init(key, shape, dtype)
    return table.at[self.padding_idx].set(0.0) if self.padding_idx >= 0 else table

  def word_table(self) -> jax.Array:
    """The word-embedding matrix [V, 768], shared with the MLM decoder."""
    return self.word_embeddings.embedding
