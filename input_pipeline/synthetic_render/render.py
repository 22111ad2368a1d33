"""Rendering: the photos of a product, and the records of a catalog.

View 0 is the canonical photo; the other views are the same garment slightly
rotated, scaled and shifted. :func:`generate_catalog` yields one record per
view.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from input_pipeline.errors import SyntheticCatalogError
from input_pipeline.synthetic_render.catalog_table import _SUBCATEGORIES
from input_pipeline.synthetic_render.palette import COLOURS, PATTERNS, SOLID
from input_pipeline.synthetic_render.products import (
    _MAX_SEED,
    _VIEW_COUNT_STREAM,
    _VIEW_STREAM,
    SyntheticProduct,
    _check_word,
    sample_product,
)
from input_pipeline.synthetic_render.shapes import (
    BODY,
    LACE,
    LINE,
    METAL,
    OUTLINE_WIDTH,
    SHADE,
    SOLE_DARK,
    SOLE_LIGHT,
    TRIM,
    Shape,
    _ellipse,
)

WHITE = (255, 255, 255)
SUPERSAMPLE = 2  # draw at this multiple of the size, then box-downsample (antialiasing)
FILL_FRACTION = 0.86  # canonical view: the garment's longer side spans this share of the frame
MARGIN_FRACTION = 0.02  # views keep the garment this far from the frame's edges
PATTERN_PERIOD = 0.09  # stripe / dot / check period, as a share of the frame
STRIPE_DUTY = 0.45  # share of a period taken by a stripe or check band
DOT_RADIUS = 0.24  # polka dot radius, as a share of the period
CHECK_MIX = 0.5  # check bands: this mix of the pattern colour into the main one
VIEW_ROTATION_DEG = (3.0, 10.0)  # views > 0: rotation magnitude range
VIEW_SCALE = (0.78, 0.96)  # views > 0: scale range (1 = canonical)
VIEW_SHIFT = 0.07  # views > 0: largest shift, share of the frame
DARK_LUMINANCE = 70.0  # colours darker than this get lighter (not darker) details


def _mix(rgb: Sequence[float], other: Sequence[float], amount: float) -> tuple[int, int, int]:
  return tuple(int(round((1 - amount) * c + amount * o)) for c, o in zip(rgb, other))


def _palette(colour: str) -> dict[str, tuple[int, int, int]]:
  """The RGB colour of every role for a garment of ``colour``."""
  main = COLOURS[colour]
  luminance = 0.299 * main[0] + 0.587 * main[1] + 0.114 * main[2]
  black = (0, 0, 0)
  if luminance < DARK_LUMINANCE:
    shade, trim, seam = _mix(main, WHITE, 0.22), _mix(main, WHITE, 0.1), _mix(main, WHITE, 0.4)
  else:
    shade, trim, seam = _mix(main, black, 0.35), _mix(main, black, 0.13), _mix(main, black, 0.55)
  return {
      BODY: main,
      SHADE: shade,
      TRIM: trim,
      LINE: seam,
      SOLE_LIGHT: (238, 236, 230),
      SOLE_DARK: (38, 36, 35),
      METAL: (196, 164, 82),
      LACE: (60, 60, 60) if luminance > 170 else (246, 246, 246),
  }


@dataclasses.dataclass(frozen=True)
class _Silhouette:
  shapes: tuple[Shape, ...]
  bbox: tuple[float, float, float, float]  # x0, y0, x1, y1 in design units


_SILHOUETTE_CACHE: dict[tuple, _Silhouette] = {}


def _silhouette(product: SyntheticProduct) -> _Silhouette:
  """The shapes of a product (a function of its sub-category and attributes only)."""
  sub = _SUBCATEGORIES.get(product.subcategory)
  if sub is None:
    raise SyntheticCatalogError(
        f'product {product.product_id}: unknown sub-category {product.subcategory!r}'
    )
  for key in ('colour', 'pattern'):
    if key not in product.attributes:
      raise SyntheticCatalogError(f'product {product.product_id}: no {key!r} attribute')
  if product.attributes['colour'] not in COLOURS:
    raise SyntheticCatalogError(
        f'product {product.product_id}: unknown colour {product.attributes["colour"]!r}'
    )
  if product.attributes['pattern'] not in PATTERNS:
    raise SyntheticCatalogError(
        f'product {product.product_id}: unknown pattern {product.attributes["pattern"]!r}'
    )
  if (
      product.attributes['pattern'] != SOLID
      and product.attributes.get('pattern_colour') not in COLOURS
  ):
    raise SyntheticCatalogError(
        f'product {product.product_id}: pattern {product.attributes["pattern"]!r} needs a '
        f'known pattern_colour, got {product.attributes.get("pattern_colour")!r}'
    )
  values = []
  for kind, allowed in sub.attributes:
    value = product.attributes.get(kind)
    if value not in allowed:
      raise SyntheticCatalogError(
          f'product {product.product_id}: {sub.name} needs {kind} in {allowed}, got {value!r}'
      )
    values.append(value)
  key = (sub.name, tuple(values))
  if key not in _SILHOUETTE_CACHE:
    shapes = tuple(sub.draw(dict(zip((k for k, _ in sub.attributes), values))))
    points = np.concatenate([s.points for s in shapes])
    bbox = (*points.min(axis=0), *points.max(axis=0))
    _SILHOUETTE_CACHE[key] = _Silhouette(shapes, tuple(float(v) for v in bbox))
  return _SILHOUETTE_CACHE[key]


def _view_transform(
    bbox: Sequence[float], size: int, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
  """Affine map design units -> pixels: (A [2, 2], t [2]), pixel = A @ p + t.

  ``rng`` None gives the canonical view (centred, FILL_FRACTION of the frame);
  otherwise a random rotation, scale and shift, kept inside the frame.
  """
  x0, y0, x1, y1 = bbox
  centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
  scale = FILL_FRACTION * size / max(x1 - x0, y1 - y0)
  angle, shift = 0.0, np.zeros(2)
  if rng is not None:
    angle = math.radians(rng.uniform(*VIEW_ROTATION_DEG)) * (1 if rng.integers(2) else -1)
    scale *= rng.uniform(*VIEW_SCALE)
    shift = rng.uniform(-VIEW_SHIFT, VIEW_SHIFT, 2) * size
  c, s = math.cos(angle), math.sin(angle)
  matrix = scale * np.array([[c, -s], [s, c]])
  corners = (np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) - centre) @ matrix.T
  half = np.abs(corners).max(axis=0)
  margin = MARGIN_FRACTION * size
  shrink = min(1.0, float(np.min((size / 2 - margin) / half)))
  matrix, half = matrix * shrink, half * shrink
  position = np.clip(size / 2 + shift, half + margin, size - half - margin)
  return matrix, position - matrix @ centre


_UNIT_DOT = _ellipse(0.0, 0.0, 1.0, 1.0, 12)  # [12, 2]


def _pattern_primitives(
    pattern: str, bbox: Sequence[float], period: float
) -> list[tuple[str, np.ndarray]]:
  """(colour key, polygons [n, k, 2]) groups of a pattern covering ``bbox`` (design units).

  Colour keys: 'accent' (the pattern colour) and 'mix' (the bands of checks).
  """
  x0, y0, x1, y1 = bbox
  x0, y0, x1, y1 = x0 - period, y0 - period, x1 + period, y1 + period
  band = STRIPE_DUTY * period
  rows, columns = np.arange(y0, y1, period), np.arange(x0, x1, period)

  def rects(left, top, right, bottom):  # each argument: [n] -> [n, 4, 2]
    return np.stack(
        [
            np.stack([left, top], -1),
            np.stack([right, top], -1),
            np.stack([right, bottom], -1),
            np.stack([left, bottom], -1),
        ],
        axis=1,
    )

  def horizontal():
    return rects(np.full_like(rows, x0), rows, np.full_like(rows, x1), rows + band)

  def vertical():
    return rects(columns, np.full_like(columns, y0), columns + band, np.full_like(columns, y1))

  if pattern == 'horizontal stripes':
    return [('accent', horizontal())]
  if pattern == 'vertical stripes':
    return [('accent', vertical())]
  if pattern == 'checks':
    xs, ys = np.meshgrid(columns, rows)
    xs, ys = xs.ravel(), ys.ravel()
    return [
        ('mix', horizontal()),
        ('mix', vertical()),
        ('accent', rects(xs, ys, xs + band, ys + band)),
    ]
  if pattern == 'diagonal stripes':
    width = band * math.sqrt(2)  # measured along x, so that stripes are `band` thick
    c = np.arange(x0 - (y1 - y0), x1, period * math.sqrt(2))
    polygons = np.stack(
        [
            np.stack([c + y0, np.full_like(c, y0)], -1),
            np.stack([c + width + y0, np.full_like(c, y0)], -1),
            np.stack([c + width + y1, np.full_like(c, y1)], -1),
            np.stack([c + y1, np.full_like(c, y1)], -1),
        ],
        axis=1,
    )
    return [('accent', polygons)]
  if pattern == 'polka dots':
    dot_rows = np.arange(y0, y1, period * 0.87)
    xs, ys = np.meshgrid(columns, dot_rows)
    xs = xs + (np.arange(dot_rows.size) % 2)[:, None] * period / 2
    centres = np.stack([xs.ravel(), ys.ravel()], -1)  # [n, 2]
    return [('accent', centres[:, None, :] + DOT_RADIUS * period * _UNIT_DOT[None])]
  return []


def _render(
    silhouette: _Silhouette,
    attributes: Mapping[str, str],
    size: int,
    matrix: np.ndarray,
    offset: np.ndarray,
) -> np.ndarray:
  """Draws the shapes (supersampled), returns uint8 [size, size, 3]."""
  canvas_size = size * SUPERSAMPLE
  matrix, offset = matrix * SUPERSAMPLE, offset * SUPERSAMPLE
  to_pixels = lambda points: (points @ matrix.T + offset).ravel().tolist()  # noqa: E731
  palette = _palette(attributes['colour'])
  canvas = Image.new('RGB', (canvas_size, canvas_size), WHITE)
  draw = ImageDraw.Draw(canvas)
  outline_px = max(1, round(OUTLINE_WIDTH * canvas_size))

  fabric = None  # the pattern over the whole canvas, drawn on first use
  if attributes['pattern'] != SOLID:
    accent = COLOURS[attributes['pattern_colour']]
    colours = {'accent': accent, 'mix': _mix(palette[BODY], accent, CHECK_MIX)}
    x0, y0, x1, y1 = silhouette.bbox
    period = PATTERN_PERIOD * max(x1 - x0, y1 - y0) / FILL_FRACTION
    fabric = Image.new('RGB', (canvas_size, canvas_size), palette[BODY])
    fabric_draw = ImageDraw.Draw(fabric)
    for key, polygons in _pattern_primitives(attributes['pattern'], silhouette.bbox, period):
      for polygon in (polygons @ matrix.T + offset).reshape(len(polygons), -1).tolist():
        fabric_draw.polygon(polygon, fill=colours[key])

  def outline(points):
    closed = np.concatenate([points, points[:1]])
    draw.line(to_pixels(closed), fill=palette[LINE], width=outline_px, joint='curve')

  for layer in sorted({s.layer for s in silhouette.shapes}):
    shapes = [s for s in silhouette.shapes if s.layer == layer]
    body = [s for s in shapes if s.role == BODY and s.closed]
    if body and fabric is None:
      for s in body:
        draw.polygon(to_pixels(s.points), fill=palette[BODY])
    elif body:
      mask = Image.new('1', (canvas_size, canvas_size), 0)  # binary: pastes 5x faster than 'L'
      mask_draw = ImageDraw.Draw(mask)
      for s in body:
        mask_draw.polygon(to_pixels(s.points), fill=1)
      canvas.paste(fabric, (0, 0), mask)
    for s in body:
      if s.outline:
        outline(s.points)
    for s in shapes:
      if s.role == BODY and s.closed:
        continue
      if s.closed:
        draw.polygon(to_pixels(s.points), fill=palette[s.role])
        if s.outline:
          outline(s.points)
      else:
        width = max(1, round(s.width * canvas_size))
        draw.line(to_pixels(s.points), fill=palette[s.role], width=width, joint='curve')
  return np.asarray(canvas.reduce(SUPERSAMPLE))


def _check_size(image_size) -> int:
  return _check_word('image_size', image_size, 16)


def render_view(
    product: SyntheticProduct, view: int, seed: int, image_size: int = 256
) -> np.ndarray:
  """One photo of a product: uint8 [image_size, image_size, 3] on white.

  View 0 is the canonical photo (centred, upright); other views are the same
  garment slightly rotated, scaled and shifted, deterministically from
  ``(seed, product_id, view)``.

  Raises:
    SyntheticCatalogError: bad arguments, or a product whose sub-category or
      attributes are not in the catalog.
  """
  view = _check_word('view', view, 0, _MAX_SEED)
  seed = _check_word('seed', seed, 0, _MAX_SEED)
  image_size = _check_size(image_size)
  silhouette = _silhouette(product)
  rng = None
  if view > 0:
    product_key = zlib.crc32(product.product_id.encode('utf-8'))
    rng = np.random.default_rng([seed, _VIEW_STREAM, view, product_key])
  matrix, offset = _view_transform(silhouette.bbox, image_size, rng)
  return _render(silhouette, product.attributes, image_size, matrix, offset)


def num_views(index: int, seed: int, max_views: int = 4) -> int:
  """How many views product ``index`` of catalog ``seed`` has: 1..max_views."""
  max_views = _check_word('max_views', max_views, 1)
  rng = np.random.default_rng(
      [
          _check_word('seed', seed, 0, _MAX_SEED),
          _check_word('index', index, 0, _MAX_SEED),
          _VIEW_COUNT_STREAM,
      ]
  )
  return 1 + int(rng.integers(max_views))


def generate_catalog(
    num_products: int, seed: int, image_size: int = 256, max_views: int = 4
) -> Iterator[dict]:
  """Yields one record per view of products 0..num_products-1 of catalog ``seed``.

  Record: {'id': f'{product_id}_{view}', 'product_id', 'image': uint8 [S, S, 3],
  'caption': title + ' ' + description, 'title', 'description', 'category',
  'subcategory', 'pose': view index, 'attributes': dict}.

  Raises:
    SyntheticCatalogError: an argument out of range.
  """
  num_products = _check_word('num_products', num_products, 0)
  seed = _check_word('seed', seed, 0, _MAX_SEED)
  image_size = _check_size(image_size)
  max_views = _check_word('max_views', max_views, 1)
  for index in range(num_products):
    product = sample_product(index, seed)
    for view in range(num_views(index, seed, max_views)):
      yield {
          'id': f'{product.product_id}_{view}',
          'product_id': product.product_id,
          'image': render_view(product, view, seed, image_size),
          'caption': f'{product.title} {product.description}',
          'title': product.title,
          'description': product.description,
          'category': product.category,
          'subcategory': product.subcategory,
          'pose': view,
          'attributes': dict(product.attributes),
      }
