"""The ``synthetic_fashion`` dataset: the embedded synthetic catalog, prepared like the others.

The records are those of :func:`input_pipeline.synthetic_render.generate_catalog`:
``num_products`` products for train (catalog ``seed``) and
``num_validation_products`` for validation (catalog ``seed +
VALIDATION_SEED_OFFSET``, so the splits differ), each with up to ``max_views``
views. The class lists are the generator's fixed ``main_categories()`` and
``sub_categories()``. No input files are needed.

Drawing a view is what costs (a few ms), so the text pass builds the records
from ``sample_product`` and ``num_views`` without drawing anything, exactly as
``generate_catalog`` lays them out (a test holds the two to the same records),
and the image pass draws each view once, in the image worker processes
(``render_view`` is deterministic, so any order or process gives the same
pixels).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence

from input_pipeline import synthetic_render
from input_pipeline.datasets.base import (
    DataSource,
    ImageInput,
    PrepareOptions,
    PreparedDatasetBuilder,
    SourceRecord,
    normalize_text,
)
from input_pipeline.errors import FatalInputError, SkippedRecords

# The attribute labels stored with every record (the attribute heads' targets): the two
# attributes every product has; the sub-category-specific ones (length, pocket ...) are not.
ATTRIBUTE_CLASSES = {'colour': synthetic_render.MAIN_COLOURS, 'pattern': synthetic_render.PATTERNS}

# The validation split is generated from seed + this offset.
VALIDATION_SEED_OFFSET = 1_000_003


@dataclasses.dataclass(frozen=True)
class SyntheticOptions(PrepareOptions):
  """Options of ``synthetic_fashion``.

  Attributes:
    num_products: products of the train split.
    num_validation_products: products of the validation split.
    seed: seed of the train split (validation: ``seed + VALIDATION_SEED_OFFSET``).
    max_views: views per product at most.
  """

  vocab_size: int = 1000
  caption_fields: str = 'title+description'
  num_products: int = 2000
  num_validation_products: int = 300
  seed: int = 0
  max_views: int = 4

  CAPTION_FIELDS = ('title', 'title+description')

  def __post_init__(self):
    super().__post_init__()
    for name in ('num_products', 'num_validation_products', 'max_views'):
      if getattr(self, name) < 1:
        raise FatalInputError(f'invalid option: {name}={getattr(self, name)}, expected >= 1')


class SyntheticSource(DataSource):
  """The synthetic catalog of each split."""

  class_list_source = 'the synthetic catalog classes'

  def __init__(self, options: SyntheticOptions):
    self._options = options
    self._catalogs = {  # split: (number of products, catalog seed)
        'train': (options.num_products, options.seed),
        'validation': (options.num_validation_products, options.seed + VALIDATION_SEED_OFFSET),
    }

  def _caption(self, product: synthetic_render.SyntheticProduct) -> str:
    fields = self._options.caption_fields
    if fields == 'title':
      return product.title
    return f'{product.title} {product.description}'  # generate_catalog's 'caption'

  def read_records(self, skips: SkippedRecords) -> dict[str, list[SourceRecord]]:
    del skips  # The generator makes no bad records (the common checks would see them).
    records = {}
    for split, (num_products, seed) in self._catalogs.items():
      records[split] = []
      for index in range(num_products):
        product = synthetic_render.sample_product(index, seed)
        for view in range(synthetic_render.num_views(index, seed, self._options.max_views)):
          record_id = f'{product.product_id}_{view}'
          records[split].append(
              SourceRecord(
                  id=record_id,
                  product_id=product.product_id,
                  caption=normalize_text(self._caption(product)),
                  category=product.category,
                  subcategory=product.subcategory,
                  pose=str(view),
                  where=f'synthetic {split} product {index} view {view} (id {record_id!r})',
                  image_ref=functools.partial(
                      synthetic_render.render_view, product, view, seed, self._options.image_size
                  ),
                  attributes=tuple(product.attributes[name] for name in ATTRIBUTE_CLASSES),
              )
          )
    return records

  def class_names(
      self, records: Mapping[str, Sequence[SourceRecord]]
  ) -> tuple[list[str], list[str]]:
    del records  # Fixed by the generator.
    return (list(synthetic_render.main_categories()), list(synthetic_render.sub_categories()))

  def attribute_classes(self) -> dict[str, list[str]]:
    return {name: list(values) for name, values in ATTRIBUTE_CLASSES.items()}

  def images(
      self, split: str, records: Sequence[SourceRecord]
  ) -> Iterator[tuple[SourceRecord, ImageInput]]:
    for record in records:
      yield record, record.image_ref  # Drawn in the worker processes.


class SyntheticFashion(PreparedDatasetBuilder):
  """Procedurally drawn products with captions (no download)."""

  name = 'synthetic_fashion'
  DESCRIPTION = __doc__
  OPTIONS_CLS = SyntheticOptions

  @classmethod
  def make_source(cls, manual_dir: str | None, options: SyntheticOptions) -> DataSource:
    del manual_dir  # Nothing to read.
    return SyntheticSource(options)
