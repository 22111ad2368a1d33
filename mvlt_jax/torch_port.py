"""A PyTorch port of MVLT with the public release's parameter names and shapes.

This module is the PyTorch side of the converter: ``MVLT(config).state_dict()`` has
exactly the keys and shapes of the release (see ``pvlt_tiny_*_state_dict.tsv`` in the
reference), so a release checkpoint loads into it with ``strict=True``, and a
``mvlt_jax`` checkpoint converted by ``mvlt_jax.convert`` runs in it. It is also the
reference implementation that the JAX model is tested against (``tests/test_convert.py``).

It imports PyTorch only (no JAX, no TensorFlow). Tensors are PyTorch's usual layout:
images ``[B, 3, H, W]`` float in [0, 1], token ids ``[B, L]`` int64.

Architecture (``ARCHITECTURE.md``): four pyramid stages; in each, the visual tokens
(patch-embedded) and the text tokens (a Linear of the previous stage's text tokens) are
concatenated and go through pre-norm transformer blocks whose attention reduces the
visual keys/values spatially. Heads read stage 4's text tokens (MLM, ITM, recognition)
or the visual maps of stages 2-4 (MIR decoder); the demo's attribute heads (not in the
release) read the [CLS] token and the pooled stage-4 visual tokens.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mvlt_jax.errors import MVLTError

# The heads a model can have: ``mvlt_jax.models.mvlt.HEAD_NAMES``, which this module cannot
# import (it imports without JAX); ``tests/test_convert.py`` checks that the two agree.
HEAD_NAMES = ('mlm', 'itm', 'mir', 'recognition', 'attributes')
# The sides of the attribute heads, as ``mvlt_jax.models.mvlt.ATTRIBUTE_LABELS``'s keys
# (checked by the same test): ``<side>_attr<k>_head[_embed]`` for attribute k, reading [CLS]
# ('caption', 'imagecls') or the pooled stage-4 visual tokens ('image').
ATTRIBUTE_SIDES = ('caption', 'image', 'imagecls')
PRETRAIN_HEADS = ('mlm', 'itm', 'mir')  # the release's pre-training model
RECOGNITION_HEADS = ('recognition',)  # the release's recognition model
KNOWN_HEADS = frozenset(HEAD_NAMES)

# Blocks per stage of the published variants; widths are PVT-v1's for all of them.
# Mirrors ``mvlt_jax.models.variants`` (kept separate so that this module imports
# without JAX; ``tests/test_convert.py`` checks that both tables agree).
_PVT_WIDTHS = dict(
    embed_dims=(64, 128, 320, 512),
    num_heads=(1, 2, 5, 8),
    mlp_ratios=(8, 8, 4, 4),
    sr_ratios=(8, 4, 2, 1),
)
VARIANTS = {
    'pvlt_tiny': dict(depths=(2, 2, 2, 2), **_PVT_WIDTHS),
    'pvlt_small': dict(depths=(3, 4, 6, 3), **_PVT_WIDTHS),
    'pvlt_medium': dict(depths=(3, 4, 18, 3), **_PVT_WIDTHS),
    'pvlt_large': dict(depths=(3, 8, 27, 3), **_PVT_WIDTHS),
    'pvlt_micro': dict(
        embed_dims=(32, 64, 96, 128),
        num_heads=(1, 2, 3, 4),
        mlp_ratios=(4, 4, 4, 4),
        depths=(1, 1, 1, 1),
        sr_ratios=(8, 4, 2, 1),
    ),
}


# Std of the release's trunc_normal_ init (timm's, with absolute bounds +-2).
INIT_STD = 0.02


def init_weights_(module: nn.Module) -> None:
  """The release's ``_init_weights`` for one module (applied with ``model.apply``).

  Linear: weight trunc_normal(0.02), bias 0; LayerNorm: weight 1, bias 0; anything else
  (embeddings, convolutions, BatchNorm, the classifiers' ``linear_bias``) is left as built.
  """
  if isinstance(module, nn.Linear):
    nn.init.trunc_normal_(module.weight, std=INIT_STD)
    if module.bias is not None:
      nn.init.zeros_(module.bias)
  elif isinstance(module, nn.LayerNorm):
    nn.init.ones_(module.weight)
    nn.init.zeros_(module.bias)


class TorchPortConfigError(MVLTError, ValueError):
  """A configuration or an input that the PyTorch port cannot be built for / run on."""


@dataclasses.dataclass(frozen=True)
class MVLTConfig:
  """Hyper-parameters of the port; defaults are the release's pvlt_tiny pre-training model."""

  embed_dims: tuple[int, ...] = (64, 128, 320, 512)
  num_heads: tuple[int, ...] = (1, 2, 5, 8)
  mlp_ratios: tuple[int, ...] = (8, 8, 4, 4)
  depths: tuple[int, ...] = (2, 2, 2, 2)
  sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
  patch_sizes: tuple[int, ...] = (4, 2, 2, 2)
  # Image size the visual position embeddings are stored for (224 -> grids 56/28/14/7).
  pos_grid_size: int = 224
  text_length: int = 128
  vocab_size: int = 30522
  text_width: int = 768  # BERT embedding width (also the MLM head's)
  head_width: int = 768  # hidden width of the ITM / recognition heads
  text_max_positions: int = 512  # rows of the BERT position-embedding table
  type_vocab_size: int = 2
  # The [PAD] id: ``nn.Embedding(padding_idx=...)`` of the word table, so [PAD] lookups add
  # no gradient to its row (the release: 0). -1: none. Same name as ``config.model``'s field.
  word_padding_idx: int = 0
  heads: tuple[str, ...] = PRETRAIN_HEADS
  num_main_classes: int = 48
  num_sub_classes: int = 122
  # Classes per attribute of the 'attributes' heads (not in the release; the demo's).
  attribute_classes: tuple[int, ...] = ()
  mir_channels: int = 64  # c of the MIR decoder
  drop_path_rate: float = 0.1  # rises linearly from 0 over all blocks
  text_dropout_rate: float = 0.1  # after the BERT embedding LayerNorm
  stage_dropout_rate: float = 0.0  # after concatenating visual and text tokens
  text_layer_norm_eps: float = 1e-12
  block_layer_norm_eps: float = 1e-6
  layer_norm_eps: float = 1e-5  # patch embed, text embed, SR, heads
  batch_norm_eps: float = 1e-5
  batch_norm_momentum: float = 0.1  # PyTorch convention (weight of the new batch)
  decoder_upsample_factor: int = 8  # the MIR output's upsampling from the stage-2 grid

  def __post_init__(self):
    per_stage = ('embed_dims', 'num_heads', 'mlp_ratios', 'depths', 'sr_ratios', 'patch_sizes')
    for name in per_stage:
      value = tuple(int(v) for v in getattr(self, name))
      if len(value) != 4:
        raise TorchPortConfigError(
            f'MVLTConfig.{name} needs 4 entries (one per stage), ' f'got {value}.'
        )
      object.__setattr__(self, name, value)
    heads = tuple(self.heads)
    unknown = sorted(set(heads) - KNOWN_HEADS)
    if unknown:
      raise TorchPortConfigError(f'Unknown heads {unknown}; choose from {sorted(KNOWN_HEADS)}.')
    object.__setattr__(self, 'heads', heads)
    attribute_classes = tuple(int(n) for n in self.attribute_classes)
    if 'attributes' in heads and not attribute_classes:
      raise TorchPortConfigError(
          "The 'attributes' heads need attribute_classes (classes per " 'attribute).'
      )
    if any(n < 1 for n in attribute_classes):
      raise TorchPortConfigError(
          f'attribute_classes {attribute_classes}: every attribute ' 'needs at least one class.'
      )
    object.__setattr__(self, 'attribute_classes', attribute_classes)
    for dim, heads_k in zip(self.embed_dims, self.num_heads):
      if dim % heads_k:
        raise TorchPortConfigError(f'Width {dim} is not divisible by {heads_k} heads.')
    if not -1 <= self.word_padding_idx < self.vocab_size:
      raise TorchPortConfigError(
          f'word_padding_idx {self.word_padding_idx} is neither -1 '
          f'(none) nor an id of the {self.vocab_size}-word vocabulary.'
      )
    if self.pos_grid_size % self.total_stride:
      raise TorchPortConfigError(
          f'pos_grid_size {self.pos_grid_size} is not a multiple of '
          f'the total stride {self.total_stride}.'
      )

  @classmethod
  def for_variant(cls, variant: str, **overrides) -> 'MVLTConfig':
    """The config of a named variant (``pvlt_tiny`` ...), with field overrides."""
    if variant not in VARIANTS:
      raise TorchPortConfigError(f'Unknown variant {variant!r}; choose one of {sorted(VARIANTS)}.')
    return cls(**{**VARIANTS[variant], **overrides})

  @property
  def total_stride(self) -> int:
    return math.prod(self.patch_sizes)

  def stored_grid(self, stage: int) -> int:
    """Side of the grid that ``pos_embed{stage+1}`` is stored for (0-based ``stage``)."""
    return self.pos_grid_size // math.prod(self.patch_sizes[: stage + 1])


def config_from_model_config(model_config: Any) -> MVLTConfig:
  """An ``MVLTConfig`` from a ``mvlt_jax`` ``config.model`` (ConfigDict or plain dict).

  Reads ``variant`` plus its per-stage overrides (``embed_dims`` ...; None keeps the
  variant's) and every field both configs share by name (``text_length``, ``heads``,
  ``mir_channels`` ...); ``bn_momentum`` (flax convention, weight of the old average) becomes
  PyTorch's ``batch_norm_momentum = 1 - bn_momentum``. JAX-only fields (``image_size``,
  ``dtype``, ``remat`` ...) are ignored; fields the JAX config lacks keep their defaults.
  """
  get = model_config.get
  variant = get('variant', 'pvlt_tiny')
  if variant not in VARIANTS:
    raise TorchPortConfigError(
        f'Unknown model.variant {variant!r}; ' f'choose one of {sorted(VARIANTS)}.'
    )
  fields = dict(VARIANTS[variant])
  for field in dataclasses.fields(MVLTConfig):
    value = get(field.name)
    if value is not None:
      fields[field.name] = tuple(value) if isinstance(value, (list, tuple)) else value
  if get('bn_momentum') is not None:
    fields['batch_norm_momentum'] = round(1.0 - float(get('bn_momentum')), 12)
  return MVLTConfig(**fields)


# ---------------------------------------------------------------------------------------
# Building blocks (names follow the release: PVT-v1 + HF-BERT-style embeddings).
# ---------------------------------------------------------------------------------------


class DropPath(nn.Module):
  """Stochastic depth per example: drops the residual branch with probability ``rate``."""

  def __init__(self, rate: float):
    super().__init__()
    self.rate = rate

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if self.rate == 0.0 or not self.training:
      return x
    keep = 1.0 - self.rate
    mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
    return x / keep * torch.floor(mask + keep)


class Mlp(nn.Module):
  """Linear, exact GELU, Linear."""

  def __init__(self, dim: int, hidden: int):
    super().__init__()
    self.fc1 = nn.Linear(dim, hidden)
    self.act = nn.GELU()
    self.fc2 = nn.Linear(hidden, dim)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.fc2(self.act(self.fc1(x)))


class SpatialReductionAttention(nn.Module):
  """Attention whose keys/values see the visual tokens spatially reduced by ``sr_ratio``.

  Keys and values come from [reduced visual tokens; text tokens] (when ``sr_ratio`` > 1)
  or from all tokens (``sr_ratio`` == 1); queries from all tokens.
  """

  def __init__(self, dim: int, num_heads: int, sr_ratio: int, layer_norm_eps: float):
    super().__init__()
    self.num_heads = num_heads
    self.scale = (dim // num_heads) ** -0.5
    self.q = nn.Linear(dim, dim)
    self.kv = nn.Linear(dim, 2 * dim)
    self.proj = nn.Linear(dim, dim)
    self.sr_ratio = sr_ratio
    if sr_ratio > 1:
      self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
      self.norm = nn.LayerNorm(dim, eps=layer_norm_eps)

  def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
    batch, length, dim = x.shape
    # [B, N, D] -> [B, heads, N, D/heads]
    return x.reshape(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

  def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    batch, length, dim = x.shape
    num_visual = height * width
    q = self._split_heads(self.q(x))
    if self.sr_ratio > 1:
      visual = x[:, :num_visual].transpose(1, 2).reshape(batch, dim, height, width)
      visual = self.sr(visual).flatten(2).transpose(1, 2)  # [B, HW/R^2, D]
      visual = self.norm(visual)
      kv_input = torch.cat([visual, x[:, num_visual:]], dim=1)  # [B, HW/R^2 + L, D]
    else:
      kv_input = x
    k, v = self.kv(kv_input).chunk(2, dim=-1)  # first half keys, second half values
    k, v = self._split_heads(k), self._split_heads(v)
    attn = (q @ k.transpose(-2, -1)) * self.scale  # [B, heads, N, N_kv]
    out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, length, dim)
    return self.proj(out)


class Block(nn.Module):
  """Pre-norm transformer block with spatial-reduction attention and DropPath."""

  def __init__(
      self,
      dim: int,
      num_heads: int,
      mlp_ratio: int,
      sr_ratio: int,
      drop_path_rate: float,
      config: MVLTConfig,
  ):
    super().__init__()
    self.norm1 = nn.LayerNorm(dim, eps=config.block_layer_norm_eps)
    self.attn = SpatialReductionAttention(dim, num_heads, sr_ratio, config.layer_norm_eps)
    self.drop_path = DropPath(drop_path_rate)
    self.norm2 = nn.LayerNorm(dim, eps=config.block_layer_norm_eps)
    self.mlp = Mlp(dim, dim * mlp_ratio)

  def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    x = x + self.drop_path(self.attn(self.norm1(x), height, width))
    return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
  """Non-overlapping patch conv (with bias), flattened to tokens, then LayerNorm."""

  def __init__(self, in_channels: int, dim: int, patch_size: int, layer_norm_eps: float):
    super().__init__()
    self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
    self.norm = nn.LayerNorm(dim, eps=layer_norm_eps)

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    x = self.proj(x)  # [B, D, H', W']
    height, width = x.shape[2:]
    return self.norm(x.flatten(2).transpose(1, 2)), height, width  # [B, H'W', D]


class TextEmbeddings(nn.Module):
  """BERT-style: word + absolute position + token-type (all 0), LayerNorm, dropout."""

  def __init__(self, config: MVLTConfig):
    super().__init__()
    # padding_idx: the [PAD] row gets no gradient from lookups (the tied MLM decoder still
    # gives it one); PyTorch also zeroes that row at construction, which ``init_weights_``
    # overwrites when the decoder exists (see ``MVLT.reset_parameters``).
    padding_idx = config.word_padding_idx if config.word_padding_idx >= 0 else None
    self.word_embeddings = nn.Embedding(
        config.vocab_size, config.text_width, padding_idx=padding_idx
    )
    self.position_embeddings = nn.Embedding(config.text_max_positions, config.text_width)
    self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.text_width)
    self.LayerNorm = nn.LayerNorm(config.text_width, eps=config.text_layer_norm_eps)  # pylint: disable=invalid-name
    self.dropout = nn.Dropout(config.text_dropout_rate)

  def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
    length = input_ids.shape[1]
    positions = torch.arange(length, device=input_ids.device)
    x = (
        self.word_embeddings(input_ids)
        + self.position_embeddings(positions)[None]
        + self.token_type_embeddings.weight[0]
    )
    return self.dropout(self.LayerNorm(x))  # [B, L, text_width]


def _linear_layer_norm(in_dim: int, out_dim: int, eps: float) -> nn.Sequential:
  """``Sequential(Linear, LayerNorm)``: the text embeds and the heads' ``*_embed``."""
  return nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim, eps=eps))


class MLMHead(nn.Module):
  """dense + GELU + LayerNorm, then the decoder tied to the word embedding, plus a bias."""

  def __init__(self, config: MVLTConfig, word_embeddings: nn.Embedding):
    super().__init__()
    width = config.text_width
    self.transform = nn.Module()
    self.transform.dense = nn.Linear(width, width)
    self.transform.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
    self.mlm_decoder = nn.Linear(width, config.vocab_size, bias=False)
    self.mlm_decoder.weight = word_embeddings.weight  # tied: one Parameter, two names
    self.bias = nn.Parameter(torch.zeros(config.vocab_size))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.transform.LayerNorm(F.gelu(self.transform.dense(x)))
    return self.mlm_decoder(x) + self.bias  # [B, L, V]


class ClassifierHead(nn.Module):
  """Linear with bias, plus a second separate bias (``linear_bias``), as the release has it."""

  def __init__(self, width: int, num_classes: int):
    super().__init__()
    self.linear_bias = nn.Parameter(torch.zeros(num_classes))
    self.linear = nn.Linear(width, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.linear(x) + self.linear_bias


def conv_bn(in_channels: int, out_channels: int, config: MVLTConfig) -> nn.Sequential:
  """3x3 conv (padding 1, no bias) + BatchNorm; no activation."""
  return nn.Sequential(
      nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
      nn.BatchNorm2d(out_channels, eps=config.batch_norm_eps, momentum=config.batch_norm_momentum),
  )


def upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
  """Bilinear upsampling with corner-aligned sampling (``align_corners=True``)."""
  return F.interpolate(x, scale_factor=factor, mode='bilinear', align_corners=True)


class MIRDecoder(nn.Module):
  """The masked-image-reconstruction decoder (``t2i_head``) over stage 2-4 visual maps."""

  def __init__(self, config: MVLTConfig):
    super().__init__()
    c = config.mir_channels
    _, d2, d3, d4 = config.embed_dims
    self.upsample_factor = config.decoder_upsample_factor
    self.reduction1 = conv_bn(d2, c, config)
    self.reduction2 = conv_bn(d3, c, config)
    self.reduction3 = conv_bn(d4, c, config)
    self.conv_upsample1 = conv_bn(c, c, config)
    self.conv_upsample2 = conv_bn(c, c, config)
    self.conv_upsample3 = conv_bn(c, c, config)
    self.conv_upsample4 = conv_bn(c, c, config)
    self.conv_upsample5 = conv_bn(2 * c, 2 * c, config)
    self.conv_concat2 = conv_bn(2 * c, 2 * c, config)
    self.conv_concat3 = conv_bn(3 * c, 3 * c, config)
    self.conv4 = conv_bn(3 * c, 3 * c, config)
    self.score = nn.Sequential(nn.Conv2d(3 * c, 3, kernel_size=1))

  def forward(self, s2: torch.Tensor, s3: torch.Tensor, s4: torch.Tensor) -> torch.Tensor:
    r1, r2, r3 = self.reduction1(s2), self.reduction2(s3), self.reduction3(s4)
    x2_1 = self.conv_upsample1(upsample(r3, 2)) * r2
    x3_1 = self.conv_upsample2(upsample(r2, 2)) * self.conv_upsample3(upsample(x2_1, 2)) * r1
    x2_2 = self.conv_concat2(torch.cat([x2_1, self.conv_upsample4(upsample(r3, 2))], dim=1))
    x3_2 = self.conv_concat3(torch.cat([x3_1, self.conv_upsample5(upsample(x2_2, 2))], dim=1))
    out = self.score(self.conv4(x3_2))  # [B, 3, H/8, W/8]
    return upsample(out, self.upsample_factor)  # [B, 3, H, W]


def resize_pos_embed(
    pos_embed: torch.Tensor, stored_grid: int, height: int, width: int
) -> torch.Tensor:
  """[1, g*g, D] stored for a g x g grid -> [1, H*W, D], bilinear, ``align_corners=False``."""
  dim = pos_embed.shape[-1]
  grid = pos_embed.reshape(1, stored_grid, stored_grid, dim).permute(0, 3, 1, 2)
  grid = F.interpolate(grid, size=(height, width), mode='bilinear', align_corners=False)
  return grid.reshape(1, dim, height * width).transpose(1, 2)


# ---------------------------------------------------------------------------------------
# The model.
# ---------------------------------------------------------------------------------------


class MVLT(nn.Module):
  """MVLT with the release's module names; ``forward`` returns a dict of head outputs.

  Outputs (as the configured heads exist): ``itm_logits`` [B, 2], ``mlm_logits``
  [B, L, V], ``reconstruction`` [B, 3, H, W], ``main_logits`` [B, num_main_classes],
  ``sub_logits`` [B, num_sub_classes], and for the attribute heads
  ``<side>_attribute_logits`` (a tuple of [B, classes], one per attribute) of each side of
  ``ATTRIBUTE_SIDES``.
  """

  def __init__(self, config: MVLTConfig = MVLTConfig()):
    super().__init__()
    self.config = config
    num_blocks = sum(config.depths)
    drop_path_rates = [
        config.drop_path_rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)
    ]
    in_channels, text_in = 3, config.text_width
    block_index = 0
    # Registered in the release's order (it fixes the state_dict order).
    for k, dim in enumerate(config.embed_dims, start=1):
      stored_tokens = config.stored_grid(k - 1) ** 2 + (1 if k == 4 else 0)
      setattr(self, f'pos_embed{k}', nn.Parameter(torch.zeros(1, stored_tokens, dim)))
      setattr(self, f'text_pos_embed{k}', nn.Parameter(torch.zeros(1, config.text_length, dim)))
    for k, dim in enumerate(config.embed_dims, start=1):
      i = k - 1
      setattr(
          self,
          f'patch_embed{k}',
          PatchEmbed(in_channels, dim, config.patch_sizes[i], config.layer_norm_eps),
      )
      setattr(self, f'text_embed{k}', _linear_layer_norm(text_in, dim, config.layer_norm_eps))
      setattr(
          self,
          f'block{k}',
          nn.ModuleList(
              [
                  Block(
                      dim,
                      config.num_heads[i],
                      config.mlp_ratios[i],
                      config.sr_ratios[i],
                      drop_path_rates[block_index + j],
                      config,
                  )
                  for j in range(config.depths[i])
              ]
          ),
      )
      block_index += config.depths[i]
      in_channels = text_in = dim
    self.pos_drop = nn.Dropout(config.stage_dropout_rate)
    self.text_embeddings = TextEmbeddings(config)

    last_dim, width = config.embed_dims[-1], config.head_width
    eps = config.layer_norm_eps
    if 'mlm' in config.heads:
      # The MLM head works at the word-embedding width: its decoder is that table.
      self.mlm_head_embed = _linear_layer_norm(last_dim, config.text_width, eps)
      self.mlm_head = MLMHead(config, self.text_embeddings.word_embeddings)
    if 'itm' in config.heads:
      self.itm_head_embed = _linear_layer_norm(last_dim, width, eps)
      self.itm_head = ClassifierHead(width, 2)
    if 'mir' in config.heads:
      self.t2i_head = MIRDecoder(config)
    if 'recognition' in config.heads:
      self.sup_cls_head_embed = _linear_layer_norm(last_dim, width, eps)
      self.sup_cls_head = ClassifierHead(width, config.num_main_classes)
      self.sub_cls_head_embed = _linear_layer_norm(last_dim, width, eps)
      self.sub_cls_head = ClassifierHead(width, config.num_sub_classes)
    if 'attributes' in config.heads:
      for side in ATTRIBUTE_SIDES:
        for index, num_classes in enumerate(config.attribute_classes):
          setattr(self, f'{side}_attr{index}_head_embed', _linear_layer_norm(last_dim, width, eps))
          setattr(self, f'{side}_attr{index}_head', ClassifierHead(width, num_classes))
    self.reset_parameters()

  def reset_parameters(self) -> None:
    """The release's initialisation (``ARCHITECTURE.md``, pre-training recipe), in its order.

    1. Every module's own PyTorch default (as constructed): embedding tables N(0, 1) with the
       [PAD] row zeroed (``padding_idx``), Kaiming-uniform convolutions.
    2. ``self.apply(_init_weights)``: Linear weights trunc_normal(0.02) and zero biases,
       LayerNorm 1 / 0. The MLM decoder is an ``nn.Linear`` whose weight IS the word table,
       so the word table (its [PAD] row included) ends up trunc_normal(0.02) whenever the
       model has an MLM head; without one (the recognition model) it keeps N(0, 1) with a
       zero [PAD] row. The position and token-type tables keep N(0, 1).
    3. The position embeddings: trunc_normal(0.02).
    """
    for module in self.modules():
      if isinstance(module, nn.Embedding):
        module.reset_parameters()  # N(0, 1); the padding_idx row zeroed
    self.apply(init_weights_)
    for k in range(1, 5):
      nn.init.trunc_normal_(getattr(self, f'pos_embed{k}'), std=INIT_STD)
      nn.init.trunc_normal_(getattr(self, f'text_pos_embed{k}'), std=INIT_STD)

  def _visual_pos_embed(self, stage: int, height: int, width: int) -> torch.Tensor:
    """``pos_embed{stage+1}`` for an ``height x width`` grid ([1, H*W, D])."""
    pos_embed = getattr(self, f'pos_embed{stage + 1}')
    if stage == 3:
      pos_embed = pos_embed[:, 1:]  # the unused leading (class-token) slot
    stored_grid = self.config.stored_grid(stage)
    # As the release: stage 1 resizes only when its token count differs from the stored
    # one; stages 2-4 always resize (the identity when the grid is the stored one).
    if stage == 0 and height * width == pos_embed.shape[1]:
      return pos_embed
    return resize_pos_embed(pos_embed, stored_grid, height, width)

  def _check_inputs(self, images: torch.Tensor, input_ids: torch.Tensor) -> None:
    stride = self.config.total_stride
    if images.ndim != 4 or images.shape[1] != 3:
      raise TorchPortConfigError(f'images must be [B, 3, H, W], got {tuple(images.shape)}.')
    if images.shape[2] % stride or images.shape[3] % stride:
      raise TorchPortConfigError(
          f'Image size {tuple(images.shape[2:])} is not a multiple of '
          f'the total stride {stride}.'
      )
    if input_ids.ndim != 2 or input_ids.shape[1] > self.config.text_length:
      raise TorchPortConfigError(
          f'input_ids must be [B, L] with L <= text_length '
          f'{self.config.text_length}, got {tuple(input_ids.shape)}.'
      )
    if input_ids.shape[0] != images.shape[0]:
      raise TorchPortConfigError(
          f'Batch sizes differ: images {images.shape[0]}, ' f'input_ids {input_ids.shape[0]}.'
      )

  def encode(
      self, images: torch.Tensor, input_ids: torch.Tensor
  ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Runs the four stages: visual maps [B, D_k, H_k, W_k] per stage and stage-4 text."""
    self._check_inputs(images, input_ids)
    visual = images
    text = self.text_embeddings(input_ids)  # [B, L, text_width]
    visual_maps = []
    for stage in range(4):
      k = stage + 1
      tokens, height, width = getattr(self, f'patch_embed{k}')(visual)  # [B, HW, D_k]
      tokens = tokens + self._visual_pos_embed(stage, height, width)
      # The release needs L == text_length; a shorter text uses the first L positions.
      text_pos_embed = getattr(self, f'text_pos_embed{k}')[:, : text.shape[1]]
      text = getattr(self, f'text_embed{k}')(text) + text_pos_embed  # [B, L, D_k]
      x = self.pos_drop(torch.cat([tokens, text], dim=1))  # [B, HW + L, D_k]
      for block in getattr(self, f'block{k}'):
        x = block(x, height, width)
      num_visual = height * width
      text = x[:, num_visual:]
      visual = x[:, :num_visual].transpose(1, 2).reshape(x.shape[0], -1, height, width)
      visual_maps.append(visual)
    return visual_maps, text

  def forward(self, images: torch.Tensor, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """``images`` [B, 3, H, W] in [0, 1], ``input_ids`` [B, L] -> dict of head outputs."""
    visual_maps, text = self.encode(images, input_ids)
    cls_token = text[:, 0]  # [B, D_4]
    outputs = {}
    if 'itm' in self.config.heads:
      outputs['itm_logits'] = self.itm_head(self.itm_head_embed(cls_token))
    if 'mlm' in self.config.heads:
      outputs['mlm_logits'] = self.mlm_head(self.mlm_head_embed(text))
    if 'mir' in self.config.heads:
      outputs['reconstruction'] = self.t2i_head(*visual_maps[1:])
    if 'recognition' in self.config.heads:
      outputs['main_logits'] = self.sup_cls_head(self.sup_cls_head_embed(cls_token))
      outputs['sub_logits'] = self.sub_cls_head(self.sub_cls_head_embed(cls_token))
    if 'attributes' in self.config.heads:
      # As mvlt_jax.models.mvlt: the caption's attributes from [CLS], the image's from the
      # pooled stage-4 visual tokens ('image') and from [CLS] ('imagecls').
      features = {
          'caption': cls_token,
          'image': visual_maps[-1].mean(dim=(2, 3)),
          'imagecls': cls_token,
      }  # each [B, D_4]
      for side in ATTRIBUTE_SIDES:
        outputs[f'{side}_attribute_logits'] = tuple(
            getattr(self, f'{side}_attr{index}_head')(
                getattr(self, f'{side}_attr{index}_head_embed')(features[side])
            )
            for index in range(len(self.config.attribute_classes))
        )
    return outputs


def build_model(config: MVLTConfig | None = None, **overrides) -> MVLT:
  """``MVLT`` for ``config`` (default: pvlt_tiny pre-training), with field overrides."""
  config = config or MVLTConfig()
  if overrides:
    config = dataclasses.replace(config, **overrides)
  return MVLT(config)


def count_parameters(model: nn.Module) -> int:
  """Trainable parameter count, each shared Parameter (the tied decoder) once."""
  return sum(p.numel() for p in model.parameters())


def state_dict_shapes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
  """``{key: shape}`` of a state dict (for comparisons with the reference listings)."""
  return {key: tuple(value.shape) for key, value in state_dict.items()}
