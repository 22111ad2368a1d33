"""The published pyramid variants of MVLT (PVT-v1 widths) and a micro one for tests and demos.

A variant fixes the four stages' widths, heads, MLP ratios, depths and spatial-reduction
ratios. Any of these can be overridden from the config (``config.model.embed_dims`` etc.).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class PyramidSpec:
  embed_dims: tuple[int, int, int, int]
  num_heads: tuple[int, int, int, int]
  mlp_ratios: tuple[int, int, int, int]
  depths: tuple[int, int, int, int]
  sr_ratios: tuple[int, int, int, int]


_PVT_WIDTHS = dict(
    embed_dims=(64, 128, 320, 512),
    num_heads=(1, 2, 5, 8),
    mlp_ratios=(8, 8, 4, 4),
    sr_ratios=(8, 4, 2, 1),
)

VARIANTS = {
    'pvlt_tiny': PyramidSpec(depths=(2, 2, 2, 2), **_PVT_WIDTHS),
    'pvlt_small': PyramidSpec(depths=(3, 4, 6, 3), **_PVT_WIDTHS),
    'pvlt_medium': PyramidSpec(depths=(3, 4, 18, 3), **_PVT_WIDTHS),
    'pvlt_large': PyramidSpec(depths=(3, 8, 27, 3), **_PVT_WIDTHS),
    # Not published: a narrow one-block-per-stage model for CPU tests and the demo.
    'pvlt_micro': PyramidSpec(
        embed_dims=(32, 64, 96, 128),
        num_heads=(1, 2, 3, 4),
        mlp_ratios=(4, 4, 4, 4),
        depths=(1, 1, 1, 1),
        sr_ratios=(8, 4, 2, 1),
    ),
}


def resolve_pyramid(model_config) -> PyramidSpec:
  """The variant named by ``model_config.variant`` with per-field overrides applied."""
  if model_config.variant not in VARIANTS:
    raise ValueError(
        f'Unknown model.variant {model_config.variant!r}; ' f'choose one of {sorted(VARIANTS)}.'
    )
  spec = VARIANTS[model_config.variant]
  overrides = {}
  for field in dataclasses.fields(PyramidSpec):
    value = model_config.get(field.name)
    if value is not None:
      value = tuple(int(v) for v in value)
      if len(value) != 4:
        raise ValueError(f'model.{field.name} must have 4 entries (one per stage), got {value}.')
      overrides[field.name] = value
  return dataclasses.replace(spec, **overrides)
