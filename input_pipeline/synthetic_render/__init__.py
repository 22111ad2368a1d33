"""The embedded synthetic fashion catalog: procedural product photos and captions.

A deterministic, download-free stand-in for Fashion-Gen, small enough that a new
user can pre-train a tiny MVLT on it on a CPU in minutes. Every product is a
garment, shoe, bag or hat drawn with Pillow polygons on a white background, with
a Fashion-Gen style title and description:

* :data:`CATALOG` (data, not code branches) lists the main categories, their
  sub-categories, the silhouette drawer of each sub-category and the
  attributes (with their allowed values) that apply to it;
* items of one sub-category share their silhouette and differ ONLY in colour,
  pattern (drawn in a second colour inside the silhouette) and attribute values
  (sleeve length, neckline, heel height, dress length, strap type, ...), all of
  which are visible in the pixels; so telling apart the items of one
  sub-category, as the paper's retrieval protocol does (100 distractors of the
  same sub-category), needs reading the attributes from the pixels;
* every attribute value is named verbatim in the title; the description names
  them again in varied wordings (synonyms, several sentence templates);
* everything is a function of ``(seed, index)`` (and the view number), through
  per-item ``np.random.default_rng`` streams, so records can be produced in any
  order or in parallel and come out byte-identical across runs and processes.

Modules, in dependency order: ``palette`` (colours and patterns),
``attributes`` (the attribute vocabulary), ``shapes`` (what a drawer returns
and its primitives), ``garment_parts`` (building blocks of upper-body
garments), ``drawers`` (one silhouette drawer per sub-category),
``catalog_table`` (:data:`CATALOG`), ``captions`` (titles and descriptions),
``products`` (sampling), ``render`` (photos and catalog records) and
``contact_sheets`` (the debug entry).

Public API::

    CATALOG, COLOURS, PATTERNS
    main_categories() -> list[str]; sub_categories() -> list[str]
    SyntheticProduct
    sample_product(index, seed) -> SyntheticProduct
    num_views(index, seed, max_views=4) -> int   (1..max_views)
    render_view(product, view, seed, image_size=256) -> uint8 [S, S, 3]
    generate_catalog(num_products, seed, image_size=256, max_views=4) -> Iterator[dict]

Debug entry (writes contact sheets to look at)::

    python -m input_pipeline.synthetic_render --out=DIR --num_products=24
"""

from input_pipeline.errors import SyntheticCatalogError
from input_pipeline.synthetic_render.attributes import ATTRIBUTE_PHRASES
from input_pipeline.synthetic_render.catalog_table import (
    CATALOG,
    MainCategory,
    SubCategory,
    main_categories,
    sub_categories,
)
from input_pipeline.synthetic_render.palette import (
    COLOUR_SYNONYMS,
    COLOURS,
    MAIN_COLOURS,
    PATTERN_SYNONYMS,
    PATTERNS,
    SOLID,
)
from input_pipeline.synthetic_render.products import SyntheticProduct, sample_product
from input_pipeline.synthetic_render.render import generate_catalog, num_views, render_view

__all__ = [
    'ATTRIBUTE_PHRASES',
    'CATALOG',
    'COLOURS',
    'COLOUR_SYNONYMS',
    'MAIN_COLOURS',
    'PATTERNS',
    'PATTERN_SYNONYMS',
    'SOLID',
    'MainCategory',
    'SubCategory',
    'SyntheticCatalogError',
    'SyntheticProduct',
    'generate_catalog',
    'main_categories',
    'num_views',
    'render_view',
    'sample_product',
    'sub_categories',
]
