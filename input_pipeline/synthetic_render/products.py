"""Products of the synthetic catalog, sampled deterministically from ``(seed, index)``."""

from __future__ import annotations

import dataclasses

import numpy as np

from input_pipeline.errors import SyntheticCatalogError
from input_pipeline.synthetic_render.captions import _pick, _write_caption
from input_pipeline.synthetic_render.catalog_table import CATALOG
from input_pipeline.synthetic_render.palette import (
    MAIN_COLOURS,
    PATTERN_COLOURS,
    PATTERN_WEIGHTS,
    PATTERNS,
    SOLID,
)

# Stream tags of the per-item random generators (distinct, non-zero: numpy's
# SeedSequence treats [a, b] and [a, b, 0] alike).
_PRODUCT_STREAM = 1
_VIEW_COUNT_STREAM = 2
_VIEW_STREAM = 3
_MAX_SEED = 2**32  # seeds and indices are single 32-bit words


@dataclasses.dataclass(frozen=True)
class SyntheticProduct:
  """One product of the synthetic catalog.

  ``attributes`` maps 'colour', 'pattern', 'pattern_colour' (patterned items
  only) and the sub-category's attribute kinds to their values; every value is
  named verbatim in ``title``.
  """

  product_id: str
  category: str
  subcategory: str
  attributes: dict[str, str]
  title: str
  description: str


def _check_word(name: str, value, low: int, high: int | None = None) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise SyntheticCatalogError(f'{name} must be an integer, got {value!r}')
  if value < low or (high is not None and value >= high):
    bound = f'in [{low}, {high})' if high is not None else f'>= {low}'
    raise SyntheticCatalogError(f'{name} must be {bound}, got {value}')
  return int(value)


def sample_product(index: int, seed: int) -> SyntheticProduct:
  """The product number ``index`` of the catalog of ``seed`` (deterministic).

  Args:
    index: product number, 0 <= index < 2**32.
    seed: catalog seed, 0 <= seed < 2**32.

  Raises:
    SyntheticCatalogError: index or seed out of range.
  """
  index = _check_word('index', index, 0, _MAX_SEED)
  seed = _check_word('seed', seed, 0, _MAX_SEED)
  rng = np.random.default_rng([seed, index, _PRODUCT_STREAM])
  main = _pick(rng, CATALOG)
  sub = _pick(rng, main.subcategories)
  colour = _pick(rng, MAIN_COLOURS)
  pattern = PATTERNS[int(rng.choice(len(PATTERNS), p=PATTERN_WEIGHTS))]
  attributes = {'colour': colour, 'pattern': pattern}
  if pattern != SOLID:
    attributes['pattern_colour'] = _pick(rng, PATTERN_COLOURS[colour])
  for kind, values in sub.attributes:
    attributes[kind] = _pick(rng, values)
  title, description = _write_caption(sub, attributes, rng)
  return SyntheticProduct(
      product_id=f'syn{seed}-{index:07d}',
      category=main.name,
      subcategory=sub.name,
      attributes=attributes,
      title=title,
      description=description,
  )
