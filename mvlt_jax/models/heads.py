"""Task heads: MLM (tied decoder), ITM / recognition classifiers, and the MIR decoder."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mvlt_jax.models import layers
from mvlt_jax.models.resize import resize_bilinear

Dtype = Any


class MLMTransform(nn.Module):
  """``mlm_head.transform``: dense 768 -> 768, exact GELU, LayerNorm."""

  dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = layers.dense(x.shape[-1], self.dtype, 'dense')(x)
    x = nn.gelu(x, approximate=False)
    return layers.layer_norm(1e-5, self.dtype, 'LayerNorm')(x)


class MLMHead(nn.Module):
  """BERT's prediction head: dense + GELU + LayerNorm, then the tied word-embedding decoder.

  Owns ``transform`` and ``bias``; the decoder weight is the word-embedding table passed in.
  """

  dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array, word_table: jax.Array) -> jax.Array:
    x = MLMTransform(self.dtype, name='transform')(x)
    bias = self.param('bias', nn.initializers.zeros, (word_table.shape[0],))
    logits = jnp.einsum('...d,vd->...v', x, word_table.astype(self.dtype))  # [..., V]
    return logits + bias.astype(self.dtype)


class ClassifierHead(nn.Module):
  """``Linear(768 -> n)`` plus the release's separate second bias ``linear_bias``."""

  num_classes: int
  dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    logits = layers.dense(self.num_classes, self.dtype, 'linear')(x)
    second_bias = self.param('linear_bias', nn.initializers.zeros, (self.num_classes,))
    return logits + second_bias.astype(self.dtype)


class ConvBN(nn.Module):
  """3x3 conv (no bias) + BatchNorm, children named ``0`` and ``1`` as in the release."""

  features: int
  dtype: Dtype
  bn_momentum: float

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.Conv(
        self.features,
        (3, 3),
        padding=1,
        use_bias=False,
        dtype=self.dtype,
        kernel_init=layers.conv_kernel_init,
        name='0',
    )(x)
    # PyTorch's momentum 0.1 is flax's 0.9 (weight of the old running average).
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=self.bn_momentum,
        epsilon=1e-5,
        dtype=self.dtype,
        name='1',
    )(x)


def up2(x: jax.Array) -> jax.Array:
  """Bilinear x2 upsampling with ``align_corners=True``."""
  return resize_bilinear(x, (2 * x.shape[1], 2 * x.shape[2]), align_corners=True)


class Score(nn.Module):
  """``t2i_head.score``: a 1x1 conv with bias to RGB, child named ``0``."""

  dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Conv(
        3,
        (1, 1),
        dtype=self.dtype,
        kernel_init=layers.conv_kernel_init,
        bias_init=layers.conv_bias_init(x.shape[-1]),
        name='0',
    )(x)


class MIRDecoder(nn.Module):
  """U-Net-like decoder (``t2i_head``) that rebuilds the image from stages 2-4.

  Inputs: visual maps of stages 2, 3, 4 ([B, H/8, W/8, D2], [B, H/16, W/16, D3],
  [B, H/32, W/32, D4]); output [B, H, W, 3] without an output activation.
  """

  channels: int
  dtype: Dtype
  bn_momentum: float = 0.9
  output_upsampling: int = 8

  @nn.compact
  def __call__(self, stage2, stage3, stage4, train: bool) -> jax.Array:
    c = self.channels
    conv_bn = lambda features, name: ConvBN(features, self.dtype, self.bn_momentum, name=name)
    r1 = conv_bn(c, 'reduction1')(stage2, train)  # [B, H/8, W/8, c]
    r2 = conv_bn(c, 'reduction2')(stage3, train)  # [B, H/16, W/16, c]
    r3 = conv_bn(c, 'reduction3')(stage4, train)  # [B, H/32, W/32, c]
    x2_1 = conv_bn(c, 'conv_upsample1')(up2(r3), train) * r2
    x3_1 = (
        conv_bn(c, 'conv_upsample2')(up2(r2), train)
        * conv_bn(c, 'conv_upsample3')(up2(x2_1), train)
        * r1
    )
    x2_2 = jnp.concatenate([x2_1, conv_bn(c, 'conv_upsample4')(up2(r3), train)], axis=-1)
    x2_2 = conv_bn(2 * c, 'conv_concat2')(x2_2, train)  # [B, H/16, W/16, 2c]
    x3_2 = jnp.concatenate([x3_1, conv_bn(2 * c, 'conv_upsample5')(up2(x2_2), train)], axis=-1)
    x3_2 = conv_bn(3 * c, 'conv_concat3')(x3_2, train)  # [B, H/8, W/8, 3c]
    x = conv_bn(3 * c, 'conv4')(x3_2, train)
    x = Score(self.dtype, name='score')(x)  # [B, H/8, W/8, 3]
    factor = self.output_upsampling
    return resize_bilinear(x, (factor * x.shape[1], factor * x.shape[2]), align_corners=True)
