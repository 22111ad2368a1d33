"""Debug entry of the synthetic catalog: contact sheets for a person to look at.

    python -m input_pipeline.synthetic_render --out=DIR --num_products=24

writes ``contact_sheet.png`` (the canonical view of each product, with its
title) and ``views_sheet.png`` (every view of the first products) to DIR, and
prints the time per image and the first captions.
"""

from __future__ import annotations

import math
import pathlib
import sys
import time
from collections.abc import Sequence

import numpy as np
from absl import flags
from PIL import Image, ImageDraw, ImageFont

from input_pipeline.errors import SyntheticCatalogError
from input_pipeline.synthetic_render.products import sample_product
from input_pipeline.synthetic_render.render import num_views, render_view


def _contact_sheet(
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    columns: int,
    label_lines: int = 3,
    font_size: int = 11,
) -> Image.Image:
  """A grid of images with wrapped labels below each."""
  size = images[0].shape[0]
  font = ImageFont.load_default(size=font_size)
  line_h = font_size + 3
  cell_h = size + label_lines * line_h + 6
  rows = math.ceil(len(images) / columns)
  sheet = Image.new('RGB', (columns * (size + 8), rows * cell_h), (235, 235, 235))
  draw = ImageDraw.Draw(sheet)
  for k, (image, label) in enumerate(zip(images, labels)):
    x, y = (k % columns) * (size + 8) + 4, (k // columns) * cell_h + 2
    sheet.paste(Image.fromarray(image), (x, y))
    lines, current = [], ''
    for word in label.split():
      candidate = f'{current} {word}'.strip()
      if current and draw.textlength(candidate, font=font) > size:
        lines.append(current)
        current = word
      else:
        current = candidate
    lines.append(current)
    for j, text in enumerate(lines[:label_lines]):
      draw.text((x, y + size + 2 + j * line_h), text, fill=(0, 0, 0), font=font)
  return sheet


def _define_flags(flag_values: flags.FlagValues) -> None:
  f = dict(flag_values=flag_values)
  flags.DEFINE_string('out', None, 'directory for the PNG contact sheets (required)', **f)
  flags.DEFINE_integer('num_products', 24, 'products shown', **f)
  flags.DEFINE_integer('seed', 0, 'seed of the catalog', **f)
  flags.DEFINE_integer('first', 0, 'index of the first product shown', **f)
  flags.DEFINE_integer('image_size', 256, 'side of the images', **f)
  flags.DEFINE_integer('max_views', 4, 'views per product', **f)
  flags.DEFINE_integer('columns', 6, 'products per row of the contact sheet', **f)


def main(argv: Sequence[str] | None = None) -> None:
  """``argv``: the arguments after the program name (default ``sys.argv[1:]``); absl flags on
  a FlagValues of this call's own."""
  args = flags.FlagValues()
  _define_flags(args)
  argv = ['python -m input_pipeline.synthetic_render', *(sys.argv[1:] if argv is None else argv)]
  try:
    extra = args(argv)[1:]
  except flags.Error as e:
    raise SystemExit(f'error: {e}') from None
  if extra or not args.out:
    raise SystemExit(
        f'error: unexpected arguments {extra}' if extra else 'error: --out is required.'
    )
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  try:
    products = [
        sample_product(i, args.seed) for i in range(args.first, args.first + args.num_products)
    ]
    canonical = [render_view(p, 0, args.seed, args.image_size) for p in products]
    start = time.perf_counter()  # timed again, warm (the silhouettes are cached)
    for p in products:
      render_view(p, 1, args.seed, args.image_size)
    elapsed = time.perf_counter() - start
    labels = [f'{p.title}  [{p.subcategory}]' for p in products]
    _contact_sheet(canonical, labels, args.columns).save(out / 'contact_sheet.png')
    shown = products[:8]
    views, view_labels = [], []
    for i, p in zip(range(args.first, args.first + len(shown)), shown):
      for v in range(args.max_views):
        if v < num_views(i, args.seed, args.max_views):
          views.append(render_view(p, v, args.seed, args.image_size))
          view_labels.append(f'{p.product_id} view {v}')
        else:
          views.append(np.full_like(canonical[0], 255))
          view_labels.append('')
    _contact_sheet(views, view_labels, args.max_views, label_lines=1).save(out / 'views_sheet.png')
  except SyntheticCatalogError as e:
    raise SystemExit(f'error: {e}') from None
  print(
      f'wrote {out / "contact_sheet.png"} and {out / "views_sheet.png"}; '
      f'{1e3 * elapsed / len(products):.2f} ms per {args.image_size}px image'
  )
  for p in products[:6]:
    print(f'{p.product_id} {p.category} / {p.subcategory}: {p.title} | {p.description}')
