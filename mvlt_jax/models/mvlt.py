"""MVLT: the four-stage pyramid vision-language transformer and its heads."""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mvlt_jax.models import heads as heads_lib
from mvlt_jax.models import layers
from mvlt_jax.models.resize import resize_bilinear

Dtype = Any

# Every head a model can have (config.model.heads): the one list, which steps.py and
# convert.py take the names from and torch_port.py (JAX-free) mirrors, checked by a test.
HEAD_NAMES = ('mlm', 'itm', 'mir', 'recognition', 'attributes')
# The attribute heads, by side: outputs '<side>_attribute_logits' (one [B, classes] per
# attribute), parameters '<side>_attr<k>_head[_embed]', and the batch key of their targets.
ATTRIBUTE_LABELS = {
    'caption': 'caption_attribute_labels',  # from [CLS]
    'image': 'image_attribute_labels',  # from the pooled visual tokens
    'imagecls': 'image_attribute_labels',
}  # the image's, from [CLS]


# Stage 1 patchifies the image by 4, stages 2-4 halve the grid again.
PATCH_SIZES = (4, 2, 2, 2)


def stored_grid(pos_grid_size: int, stage: int) -> int:
  """Side of the visual grid that stage ``stage`` (0-based) stores its embeddings for."""
  return pos_grid_size // int(np.prod(PATCH_SIZES[: stage + 1]))


class BlockStack(nn.Module):
  """The blocks of one stage, named ``0``, ``1``, ... (the release's ``block{k}.{i}``)."""

  depth: int
  num_heads: int
  mlp_ratio: int
  sr_ratio: int
  drop_path_rates: Sequence[float]
  dtype: Dtype
  attention_impl: Optional[str]
  remat: bool
  remat_policy: str
  attention_init_std: float

  @nn.compact
  def __call__(self, x, grid_hw, deterministic):
    block_cls = layers.Block
    if self.remat:
      policy = getattr(jax.checkpoint_policies, self.remat_policy) if self.remat_policy else None
      block_cls = nn.remat(layers.Block, static_argnums=(2, 3), policy=policy)
    for i in range(self.depth):
      x = block_cls(
          self.num_heads,
          self.mlp_ratio,
          self.sr_ratio,
          self.drop_path_rates[i],
          self.dtype,
          self.attention_impl,
          self.attention_init_std,
          name=str(i),
      )(x, grid_hw, deterministic)
    return x


class MVLT(nn.Module):
  """Masked Vision-Language Transformer (pyramid, PVT-v1 style).

  ``__call__(images [B, H, W, 3] in [0, 1], input_ids [B, L])`` returns a dict with the
  outputs of the configured heads: ``itm_logits`` [B, 2], ``mlm_logits`` [B, L, V] (or
  [B, P, V] at ``mlm_positions``), ``reconstruction`` [B, H, W, 3], ``main_logits``,
  ``sub_logits``; with ``return_features`` also the stage maps and final text tokens.
  """

  embed_dims: Sequence[int]
  num_heads: Sequence[int]
  mlp_ratios: Sequence[int]
  depths: Sequence[int]
  sr_ratios: Sequence[int]
  text_length: int
  vocab_size: int
  pos_grid_size: int = 224
  text_max_positions: int = 512
  type_vocab_size: int = 2
  text_width: int = 768
  head_width: int = 768
  heads: Sequence[str] = ('mlm', 'itm', 'mir')
  num_main_classes: int = 48
  num_sub_classes: int = 122
  mir_channels: int = 64
  bn_momentum: float = 0.9
  drop_path_rate: float = 0.1
  text_dropout_rate: float = 0.1
  stage_dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  attention_impl: Optional[str] = None
  remat: bool = False
  remat_policy: str = ''  # jax.checkpoint_policies name; '' recomputes the whole block
  attention_init_std: float = 0.02
  word_grad_impl: str = 'scatter'  # 'scatter' | 'one_hot' (layers.lookup)
  padding_idx: int = 0  # [PAD]: its lookups add no gradient to the word table (-1: none)
  word_init_std: Optional[float] = None  # None: the release's (layers.TextEmbeddings)
  attribute_classes: Sequence[int] = ()  # classes per attribute (the 'attributes' heads)

  def _position_embedding(self, stage: int, grid_hw: tuple[int, int]) -> jax.Array:
    """Visual position embedding of a stage, resized to the actual grid: [1, h*w, D]."""
    side = stored_grid(self.pos_grid_size, stage)
    # The last stage stores one extra leading slot (PVT's class token) that is dropped.
    extra = 1 if stage == len(self.depths) - 1 else 0
    dim = self.embed_dims[stage]
    table = self.param(
        f'pos_embed{stage + 1}', layers.dense_kernel_init, (1, side * side + extra, dim)
    )
    grid = table[:, extra:].reshape(1, side, side, dim)
    grid = resize_bilinear(grid, grid_hw, align_corners=False, precision=jax.lax.Precision.HIGHEST)
    return grid.reshape(1, grid_hw[0] * grid_hw[1], dim).astype(self.dtype)

  @nn.compact
  def __call__(
      self,
      images: jax.Array,
      input_ids: jax.Array,
      *,
      train: bool = False,
      mlm_positions: Optional[jax.Array] = None,
      return_features: bool = False,
  ) -> dict[str, jax.Array]:
    unknown = set(self.heads) - set(HEAD_NAMES)
    if unknown:
      raise ValueError(f'Unknown heads {sorted(unknown)}; known: {HEAD_NAMES}.')
    if 'attributes' in self.heads and not self.attribute_classes:
      raise ValueError(
          "The 'attributes' heads need model.attribute_classes (classes per "
          'attribute; () takes them from the dataset).'
      )
    deterministic = not train
    batch, text_length = input_ids.shape
    if text_length > self.text_length:
      raise ValueError(
          f'input_ids has length {text_length} > model.text_length ' f'{self.text_length}.'
      )
    text_embeddings = layers.TextEmbeddings(
        self.vocab_size,
        self.text_width,
        self.text_max_positions,
        self.type_vocab_size,
        self.text_dropout_rate,
        self.dtype,
        word_grad_impl=self.word_grad_impl,
        padding_idx=self.padding_idx,
        tied_to_decoder='mlm' in self.heads,
        word_init_std=self.word_init_std,
        name='text_embeddings',
    )
    text = text_embeddings(input_ids, deterministic)  # [B, L, 768]

    total_blocks = sum(self.depths)
    drop_path_rates = np.linspace(0.0, self.drop_path_rate, total_blocks).tolist()
    visual = images.astype(self.dtype)  # [B, H, W, 3]
    stage_maps = []
    for k in range(len(self.depths)):
      dim = self.embed_dims[k]
      visual_tokens, grid_hw = layers.PatchEmbed(
          dim, PATCH_SIZES[k], self.dtype, name=f'patch_embed{k + 1}'
      )(visual)
      visual_tokens = visual_tokens + self._position_embedding(k, grid_hw)  # [B, h*w, D]
      text = layers.LinearNorm(dim, self.dtype, name=f'text_embed{k + 1}')(text)
      text_pos = self.param(
          f'text_pos_embed{k + 1}', layers.dense_kernel_init, (1, self.text_length, dim)
      )
      text = text + text_pos[:, :text_length].astype(self.dtype)  # [B, L, D]
      tokens = jnp.concatenate([visual_tokens, text], axis=1)  # [B, h*w + L, D]
      tokens = nn.Dropout(self.stage_dropout_rate)(tokens, deterministic=deterministic)
      first = sum(self.depths[:k])
      tokens = BlockStack(
          self.depths[k],
          self.num_heads[k],
          self.mlp_ratios[k],
          self.sr_ratios[k],
          drop_path_rates[first : first + self.depths[k]],
          self.dtype,
          self.attention_impl,
          self.remat,
          self.remat_policy,
          self.attention_init_std,
          name=f'block{k + 1}',
      )(tokens, grid_hw, deterministic)
      num_visual = grid_hw[0] * grid_hw[1]
      visual = tokens[:, :num_visual].reshape(batch, *grid_hw, dim)  # [B, h, w, D]
      text = tokens[:, num_visual:]  # [B, L, D]
      stage_maps.append(visual)

    outputs = {}
    if 'mlm' in self.heads:
      hidden = text
      if mlm_positions is not None:
        hidden = jnp.take_along_axis(text, mlm_positions[..., None], axis=1)  # [B, P, D4]
      hidden = layers.LinearNorm(self.text_width, self.dtype, name='mlm_head_embed')(hidden)
      logits = heads_lib.MLMHead(self.dtype, name='mlm_head')(hidden, text_embeddings.word_table())
      outputs['mlm_logits'] = logits.astype(jnp.float32)  # [B, L or P, V]
    cls_token = text[:, 0]  # [B, D4]
    classifiers = []
    if 'itm' in self.heads:
      classifiers.append(('itm_head', 2, 'itm_logits'))
    if 'recognition' in self.heads:
      classifiers.append(('sup_cls_head', self.num_main_classes, 'main_logits'))
      classifiers.append(('sub_cls_head', self.num_sub_classes, 'sub_logits'))
    for name, num_classes, output_key in classifiers:
      hidden = layers.LinearNorm(self.head_width, self.dtype, name=f'{name}_embed')(cls_token)
      logits = heads_lib.ClassifierHead(num_classes, self.dtype, name=name)(hidden)
      outputs[output_key] = logits.astype(jnp.float32)
    if 'attributes' in self.heads:
      # Not in the paper (docs/training.md, "Attribute heads"): the attributes of the caption
      # from [CLS], and of the image both from the pooled last-stage visual tokens ('image')
      # and from [CLS] ('imagecls'), so that [CLS] carries both sides for ITM to compare.
      pooled_visual = stage_maps[-1].mean(axis=(1, 2))  # [B, D4]
      for side, features in (
          ('caption', cls_token),
          ('image', pooled_visual),
          ('imagecls', cls_token),
      ):
        side_logits = []
        for index, num_classes in enumerate(self.attribute_classes):
          name = f'{side}_attr{index}_head'
          hidden = layers.LinearNorm(self.head_width, self.dtype, name=f'{name}_embed')(features)
          logits = heads_lib.ClassifierHead(num_classes, self.dtype, name=name)(hidden)
          side_logits.append(logits.astype(jnp.float32))  # [B, classes]
        outputs[f'{side}_attribute_logits'] = tuple(side_logits)
    if 'mir' in self.heads:
      decoder = heads_lib.MIRDecoder(
          self.mir_channels, self.dtype, self.bn_momentum, name='t2i_head'
      )
      outputs['reconstruction'] = decoder(*stage_maps[1:], train=train).astype(jnp.float32)
    if return_features:
      outputs['stage_maps'] = stage_maps
      outputs['text_tokens'] = text
    return outputs
