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

Public API::

    CATALOG, COLOURS, PATTERNS
    main_categories() -> list[str]; sub_categories() -> list[str]
    SyntheticProduct
    sample_product(index, seed) -> SyntheticProduct
    num_views(index, seed, max_views=4) -> int   (1..max_views)
    render_view(product, view, seed, image_size=256) -> uint8 [S, S, 3]
    generate_catalog(num_products, seed, image_size=256, max_views=4) -> Iterator[dict]

Debug entry (writes contact sheets to look at)::

    python -m input_pipeline.synthetic_fashion --out=DIR --num_products=24
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pathlib
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from input_pipeline.errors import PrepareError


class SyntheticCatalogError(PrepareError):
  """A bad argument to the synthetic catalog, or a product it cannot render."""


# ----------------------------------------------------------------------------
# Colours and patterns.
# ----------------------------------------------------------------------------

COLOURS: dict[str, tuple[int, int, int]] = {
    'black': (24, 24, 27),
    'grey': (128, 129, 134),
    'white': (250, 250, 250),
    'beige': (214, 190, 150),
    'brown': (112, 70, 40),
    'navy': (27, 38, 86),
    'blue': (38, 92, 205),
    'light blue': (138, 190, 236),
    'teal': (0, 128, 128),
    'green': (36, 142, 62),
    'olive': (108, 114, 42),
    'yellow': (242, 202, 38),
    'orange': (240, 124, 28),
    'red': (206, 30, 40),
    'burgundy': (116, 20, 46),
    'pink': (242, 152, 184),
    'purple': (112, 50, 152),
}

# Words the descriptions may use for each colour (the first is the title's).
COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    'black': ('black', 'jet black', 'deep black'),
    'grey': ('grey', 'gray', 'mid grey'),
    'white': ('white', 'bright white', 'optic white'),
    'beige': ('beige', 'sand', 'light tan'),
    'brown': ('brown', 'chocolate brown', 'dark brown'),
    'navy': ('navy', 'navy blue', 'dark navy'),
    'blue': ('blue', 'royal blue', 'cobalt blue'),
    'light blue': ('light blue', 'sky blue', 'pale blue'),
    'teal': ('teal', 'teal blue', 'deep teal'),
    'green': ('green', 'emerald green', 'kelly green'),
    'olive': ('olive', 'olive green', 'khaki green'),
    'yellow': ('yellow', 'sunflower yellow', 'bright yellow'),
    'orange': ('orange', 'tangerine', 'bright orange'),
    'red': ('red', 'scarlet', 'bright red'),
    'burgundy': ('burgundy', 'wine', 'oxblood'),
    'pink': ('pink', 'light pink', 'rose pink'),
    'purple': ('purple', 'violet', 'deep purple'),
}

# White garments would vanish on the white background: white is a pattern
# colour only (white stripes, white dots, ...).
MAIN_COLOURS: tuple[str, ...] = tuple(c for c in COLOURS if c != 'white')

SOLID = 'solid'
PATTERNS: tuple[str, ...] = (
    SOLID, 'horizontal stripes', 'vertical stripes', 'diagonal stripes',
    'polka dots', 'checks')
# Sampling weights of PATTERNS (solid items are the most common, as in shops).
PATTERN_WEIGHTS: tuple[float, ...] = (0.3, 0.14, 0.14, 0.14, 0.14, 0.14)
PATTERN_SYNONYMS: dict[str, tuple[str, ...]] = {
    SOLID: ('solid', 'plain', 'single-tone'),
    'horizontal stripes': ('horizontal stripes', 'breton-style horizontal stripes',
                           'crosswise stripes'),
    'vertical stripes': ('vertical stripes', 'lengthwise stripes',
                         'up-and-down stripes'),
    'diagonal stripes': ('diagonal stripes', 'slanted stripes', 'bias stripes'),
    'polka dots': ('polka dots', 'dots', 'spots'),
    'checks': ('checks', 'gingham checks', 'check print'),
}
# A pattern colour must differ from the main colour by this RGB distance.
MIN_PATTERN_CONTRAST = 110.0


def _pattern_colours(main: str) -> tuple[str, ...]:
  """The colours a pattern on a ``main`` garment may use (clearly different)."""
  rgb = np.array(COLOURS[main], np.float64)
  return tuple(c for c in COLOURS if c != main
               and np.linalg.norm(np.array(COLOURS[c], np.float64) - rgb)
               >= MIN_PATTERN_CONTRAST)


PATTERN_COLOURS: dict[str, tuple[str, ...]] = {
    c: _pattern_colours(c) for c in MAIN_COLOURS}


# ----------------------------------------------------------------------------
# Attribute vocabulary: kind -> value (named verbatim in titles) -> the noun
# phrases descriptions may use for it.
# ----------------------------------------------------------------------------

ATTRIBUTE_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    'sleeve': {
        'sleeveless': ('no sleeves', 'a sleeveless cut', 'open armholes'),
        'short-sleeve': ('short sleeves', 'a short-sleeved cut', 'short set-in sleeves'),
        'long-sleeve': ('long sleeves', 'a long-sleeved cut', 'full-length sleeves'),
    },
    'neckline': {
        'crew-neck': ('a crew neckline', 'a round crew neck', 'a crewneck collar'),
        'v-neck': ('a v-neckline', 'a v-neck', 'a v-shaped neckline'),
        'scoop-neck': ('a scoop neckline', 'a deep scoop neck', 'a rounded scoop neck'),
        'turtleneck': ('a turtleneck', 'a high roll neck', 'a ribbed turtleneck collar'),
        'straight-neck': ('a straight neckline', 'a straight-cut bodice',
                          'a straight-across neckline'),
    },
    'strap': {
        'thin-strap': ('thin shoulder straps', 'spaghetti straps', 'slim straps'),
        'wide-strap': ('wide shoulder straps', 'broad straps', 'wide straps'),
    },
    'collar': {
        'point-collar': ('a point collar', 'a classic pointed collar', 'a spread point collar'),
        'band-collar': ('a band collar', 'a mandarin collar', 'a stand-up band collar'),
        'stand-collar': ('a stand collar', 'a high stand collar', 'a funnel collar'),
        'hooded': ('a hood', 'an attached hood', 'a padded hood'),
    },
    'fit': {
        'cropped': ('a cropped length', 'a cropped cut', 'a short cropped body'),
        'longline': ('a longline cut', 'an elongated body', 'a longline silhouette'),
        'fitted': ('a fitted shape', 'a close fit', 'a snug fit'),
        'slouchy': ('a slouchy shape', 'a relaxed slouchy crown', 'extra slouch at the back'),
    },
    'closure': {
        'pullover': ('a pullover design with a kangaroo pocket', 'a kangaroo pouch pocket',
                     'a pull-on style with a front pouch pocket'),
        'zip-up': ('a full-length zip', 'a zip-up front', 'a front zipper'),
        'single-breasted': ('a single-breasted front', 'single-breasted buttoning',
                            'a single row of buttons'),
        'double-breasted': ('a double-breasted front', 'double-breasted buttoning',
                            'two rows of buttons'),
    },
    'lapel': {
        'notch-lapel': ('notch lapels', 'notched lapels', 'classic notch lapels'),
        'peak-lapel': ('peak lapels', 'peaked lapels', 'sharp peak lapels'),
    },
    'length': {
        'mini': ('a mini length', 'a short mini hem', 'a hem above the knee'),
        'midi': ('a midi length', 'a mid-calf hem', 'a midi hemline'),
        'maxi': ('a maxi length', 'a floor-sweeping hem', 'a full-length maxi hemline'),
        'knee-length': ('a knee-length cut', 'a hem at the knee', 'a knee-length hemline'),
        'ankle-length': ('an ankle-length cut', 'a hem at the ankle', 'a long ankle-length body'),
        'mid-thigh': ('a mid-thigh length', 'a short inseam', 'a hem at mid-thigh'),
        'cropped': ('a cropped length', 'a cropped leg', 'legs cropped above the ankle'),
        'full-length': ('a full-length leg', 'full-length legs', 'legs that reach the ankle'),
    },
    'leg': {
        'slim-leg': ('a slim leg', 'a slim tapered leg', 'narrow legs'),
        'wide-leg': ('a wide leg', 'a relaxed wide leg', 'wide flared legs'),
    },
    'pocket': {
        'zip-pocket': ('zip pockets', 'zippered side pockets', 'zipped hip pockets'),
        'slant-pocket': ('slant pockets', 'slanted side pockets', 'angled hip pockets'),
        'front-pocket': ('a front pocket', 'an exterior front pocket', 'a pocket at front'),
        'pocketless': ('a clean front', 'no exterior pockets', 'a pocket-free front'),
    },
    'hem': {
        'cuffed': ('cuffed hems', 'turned-up cuffs', 'rolled cuffs'),
        'plain-hem': ('plain hems', 'clean stitched hems', 'simple hems'),
    },
    'cuff': {
        'cuffed': ('a turned-up cuff', 'a folded cuff', 'a wide ribbed cuff'),
        'uncuffed': ('no cuff', 'a plain ribbed edge', 'an unturned edge'),
    },
    'belt': {
        'belted': ('a belt with a buckle', 'a buckled belt at the waist', 'a matching belt'),
        'unbelted': ('a plain waistband', 'a clean waistband', 'no belt'),
    },
    'height': {
        'low-top': ('a low-top profile', 'a low-cut collar', 'a low ankle collar'),
        'high-top': ('a high-top profile', 'an ankle-high collar', 'a high ankle collar'),
        'ankle': ('an ankle-height shaft', 'an ankle shaft', 'a shaft ending at the ankle'),
        'knee-high': ('a knee-high shaft', 'a tall shaft reaching the knee', 'a knee-length shaft'),
        'low-profile': ('a low-profile crown', 'a shallow crown', 'a low crown'),
        'high-profile': ('a high-profile crown', 'a tall crown', 'a deep crown'),
    },
    'fastening': {
        'lace-up': ('lace-up fastening', 'laces', 'a lace-up front'),
        'velcro-strap': ('velcro straps', 'hook-and-loop straps', 'touch-strap fastening'),
    },
    'heel': {
        'flat': ('a flat heel', 'a flat sole', 'a low flat heel'),
        'mid-heel': ('a mid heel', 'a mid-height heel', 'a medium heel'),
        'high-heel': ('a high heel', 'a tall heel', 'a towering heel'),
    },
    'toe': {
        'pointed-toe': ('a pointed toe', 'a pointy toe', 'a sharp pointed toe'),
        'round-toe': ('a round toe', 'a rounded toe', 'a soft round toe'),
    },
    'vamp': {
        'penny-strap': ('a penny strap', 'a penny-keeper strap', 'a strap across the vamp'),
        'tassel': ('tassels', 'tassel trims', 'decorative tassels'),
        'horsebit': ('a horsebit', 'a metal horsebit', 'a gold-tone horsebit'),
    },
    'handle': {
        'short-handle': ('short handles', 'twin short handles', 'short top handles'),
        'long-handle': ('long handles', 'shoulder-length handles', 'long shoulder straps'),
    },
    'flap': {
        'zip-top': ('a zip top', 'a zippered top closure', 'a zip-around top'),
        'flap-top': ('a flap top', 'a buckled top flap', 'a flap closure with buckles'),
        'envelope-flap': ('an envelope flap', 'a triangular flap', 'a pointed envelope flap'),
        'rounded-flap': ('a rounded flap', 'a curved flap', 'a half-moon flap'),
    },
    'bag_strap': {
        'chain-strap': ('a chain strap', 'a metal chain strap', 'a gold-tone chain strap'),
        'leather-strap': ('a leather strap', 'a slim leather strap', 'a smooth leather strap'),
    },
    'brim': {
        'curved-brim': ('a curved brim', 'a pre-curved visor', 'a bent brim'),
        'flat-brim': ('a flat brim', 'a straight flat visor', 'a flat peak'),
    },
}


# ----------------------------------------------------------------------------
# Shapes: what a drawer returns. Coordinates are "design units" (x right, y
# down, roughly a unit box); the renderer fits them to the frame.
# ----------------------------------------------------------------------------

# Colour roles of shapes (resolved by _palette()).
BODY = 'body'              # the garment fabric: main colour with the pattern
SHADE = 'shade'            # the inside of the garment / dark parts (main colour, darker)
TRIM = 'trim'              # ribbing, waistbands, cuffs (main colour, slightly darker)
LINE = 'line'              # seams, outlines, stitching (main colour, much darker)
SOLE_LIGHT = 'sole_light'  # white rubber soles
SOLE_DARK = 'sole_dark'    # black rubber soles and heels
METAL = 'metal'            # zips, buckles, chains (gold-tone)
LACE = 'lace'              # shoe laces (contrasting with the main colour)

# Line widths, as fractions of the image size.
OUTLINE_WIDTH = 0.006
SEAM_WIDTH = 0.005
DETAIL_WIDTH = 0.009
STRAP_WIDTH = 0.022


@dataclasses.dataclass(frozen=True)
class Shape:
  """One polygon or polyline of a silhouette.

  Attributes:
    role: colour role (BODY, SHADE, ...).
    points: [N, 2] design-unit coordinates.
    closed: a filled polygon (True) or an open polyline (False).
    width: polyline width, fraction of the image size (ignored when closed).
    outline: closed shapes: draw their outline in the LINE colour.
    layer: shapes are drawn by increasing layer; within a layer, BODY fills
      first, then their outlines, then the other shapes in list order.
  """

  role: str
  points: np.ndarray
  closed: bool = True
  width: float = SEAM_WIDTH
  outline: bool = True
  layer: int = 0


def _pts(*xy: tuple[float, float]) -> np.ndarray:
  return np.asarray(xy, np.float64).reshape(-1, 2)


def fill(role: str, points, *, layer: int = 0, outline: bool = True) -> Shape:
  """A filled polygon."""
  return Shape(role, np.asarray(points, np.float64), True, OUTLINE_WIDTH, outline, layer)


def line(role: str, points, *, width: float = SEAM_WIDTH, layer: int = 0,
         closed: bool = False) -> Shape:
  """An open polyline (``closed=True``: the polyline goes back to its start)."""
  points = np.asarray(points, np.float64)
  if closed:
    points = np.concatenate([points, points[:1]])
  return Shape(role, points, False, width, False, layer)


def _arc(cx: float, cy: float, rx: float, ry: float, start_deg: float,
         end_deg: float, n: int = 12) -> np.ndarray:
  """[n, 2] points of an elliptical arc (angles in degrees, 90 = down)."""
  t = np.radians(np.linspace(start_deg, end_deg, n))
  return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
  return _arc(cx, cy, rx, ry, 0, 360, n + 1)[:-1]


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
  return _pts((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _bezier(p0, p1, p2, n: int = 8) -> np.ndarray:
  """[n, 2] points of the quadratic Bezier curve p0 -> p2 pulled towards p1."""
  p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
  t = np.linspace(0.0, 1.0, n)[:, None]
  return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _mirror(points: np.ndarray) -> np.ndarray:
  """The points mirrored about the vertical axis x = 0."""
  return np.asarray(points, np.float64) * np.array([-1.0, 1.0])


def _symmetric(right_half: np.ndarray) -> np.ndarray:
  """A left-right symmetric polygon from its right half.

  ``right_half`` runs from the top of the axis of symmetry, down the right
  side, to the bottom of the axis (x >= 0).
  """
  right_half = np.asarray(right_half, np.float64)
  return np.concatenate([right_half, _mirror(right_half[::-1])])


def _both_sides(shapes: Sequence[Shape]) -> list[Shape]:
  """The shapes and their mirror images (for left/right symmetric details)."""
  return list(shapes) + [dataclasses.replace(s, points=_mirror(s.points)) for s in shapes]


def _along(p0, p1, n: int) -> np.ndarray:
  """[n, 2] points evenly spaced from p0 to p1 (both included)."""
  t = np.linspace(0.0, 1.0, n)[:, None]
  return (1 - t) * np.asarray(p0, np.float64) + t * np.asarray(p1, np.float64)


def _buttons(xs: Sequence[float], ys: Sequence[float], radius: float = 0.018) -> list[Shape]:
  return [fill(SHADE, _ellipse(x, y, radius, radius, 10), layer=2) for x in xs for y in ys]


# ----------------------------------------------------------------------------
# Building blocks of upper-body garments (flat lay, front view; y = 0 at the
# top of the shoulders, x = 0 on the centre front).
# ----------------------------------------------------------------------------

def _torso(neck_w: float, shoulder: tuple[float, float], armpit: tuple[float, float],
           hem_w: float, length: float, *, back_neck: float = 0.035,
           armhole_inset: float = 0.0, waist: tuple[float, float] | None = None,
           hem_curve: float = 0.0, side_points: np.ndarray | None = None) -> np.ndarray:
  """The body of a top: back neckline, shoulders, sides and hem.

  Args:
    neck_w: half-width of the neck opening.
    shoulder, armpit: right shoulder point and armpit point.
    hem_w, length: half-width and height of the hem.
    back_neck: depth of the back neckline (what shows above the front one).
    armhole_inset: > 0 for sleeveless garments: the armhole curves inwards.
    waist: optional right waist point between armpit and hem.
    hem_curve: > 0: the hem curves down to the centre by this much.
    side_points: optional [N, 2] points that replace the side seam between
      armpit and hem (e.g. the bulges of a puffer jacket).
  """
  right = [_arc(0.0, 0.0, neck_w, back_neck, 90, 0, 8), _pts(shoulder)]
  if armhole_inset > 0:
    control = (min(shoulder[0], armpit[0]) - armhole_inset, armpit[1])
    right.append(_bezier(shoulder, control, armpit, 10)[1:])
  else:
    right.append(_pts(armpit))
  if side_points is not None:
    right.append(side_points)
  if waist is not None:
    right.append(_pts(waist))
  if hem_curve > 0:
    right.append(_arc(0.0, length, hem_w, hem_curve, 0, 90, 8))
  else:
    right.append(_pts((hem_w, length), (0.0, length)))
  return _symmetric(np.concatenate(right))


def _sleeve_frame(angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
  """Unit vectors along a right sleeve (pointing down-out) and across it (inwards)."""
  a = math.radians(angle_deg)
  along = np.array([math.sin(a), math.cos(a)])
  across = np.array([-math.cos(a), math.sin(a)])
  return along, across


def _sleeve(shoulder, armpit, angle_deg: float, length: float, cuff_w: float,
            cuff_h: float = 0.0, hem_stitch: bool = True, layer: int = 0) -> list[Shape]:
  """A right sleeve (mirror it for the left one) with an optional cuff band.

  The sleeve leaves the armhole (shoulder -> armpit) at ``angle_deg`` from the
  vertical; ``length`` is measured along its top edge.
  """
  along, across = _sleeve_frame(angle_deg)
  shoulder, armpit = np.asarray(shoulder, np.float64), np.asarray(armpit, np.float64)
  top_end = shoulder + length * along
  bottom_end = top_end + cuff_w * across
  shapes = [fill(BODY, np.stack([shoulder, top_end, bottom_end, armpit]), layer=layer)]
  if cuff_h > 0:
    inner_edge = (top_end - cuff_h * along, bottom_end - cuff_h * along)
    band = np.stack([inner_edge[0], top_end, bottom_end, inner_edge[1]])
    shapes.append(fill(TRIM, band, layer=layer))
    shapes += _rib_lines(inner_edge, (top_end, bottom_end), 5, layer=layer)
  elif hem_stitch:
    shapes.append(line(LINE, [top_end - 0.035 * along, bottom_end - 0.035 * along], layer=layer))
  return shapes


def _rib_lines(start_edge, end_edge, n: int, layer: int = 0) -> list[Shape]:
  """``n`` ribbing lines across a band, between two of its opposite edges.

  Each edge is a pair of points; line k joins the k-th of n evenly spaced
  inner points of ``start_edge`` to the k-th of ``end_edge``.
  """
  t = np.linspace(0.0, 1.0, n + 2)[1:-1, None]
  (a0, a1), (b0, b1) = np.asarray(start_edge, np.float64), np.asarray(end_edge, np.float64)
  starts, ends = a0 + t * (a1 - a0), b0 + t * (b1 - b0)
  return [line(LINE, [s, e], width=SEAM_WIDTH * 0.8, layer=layer) for s, e in zip(starts, ends)]


def _neckline(kind: str, neck_w: float, *, back_neck: float = 0.035, depth: float | None = None,
              band: float = 0.03, layer: int = 0) -> list[Shape]:
  """The front neckline of a top: the inside of the back (SHADE) and a neckband.

  Kinds: crew-neck, v-neck, scoop-neck, turtleneck.
  """
  back = _arc(0.0, 0.0, neck_w, back_neck, 180, 0, 10)  # (-neck_w, 0) -> (neck_w, 0)
  if kind == 'turtleneck':
    top, bottom = -0.17, 0.05
    collar = np.concatenate([_pts((-neck_w - 0.02, top), (neck_w + 0.02, top)),
                             _arc(0.0, 0.0, neck_w + 0.03, bottom, 0, 180, 10)])
    fold = _arc(0.0, top + 0.07, neck_w + 0.025, 0.02, 0, 180, 8)
    shapes = [fill(SHADE, np.concatenate([back, back[::-1] * [1, 0]]), layer=layer),
              fill(TRIM, collar, layer=layer + 1),
              line(LINE, fold, layer=layer + 1),
              fill(SHADE, _ellipse(0.0, top, neck_w + 0.01, 0.03, 16), layer=layer + 1)]
    xs = np.linspace(-neck_w, neck_w, 7)
    shapes += [line(LINE, [(x, top + 0.09), (x * 1.1, bottom - 0.01)], width=SEAM_WIDTH * 0.8,
                    layer=layer + 1) for x in xs]
    return shapes
  if kind == 'v-neck':
    depth = 0.3 if depth is None else depth
    front = _pts((neck_w, 0.0), (0.0, depth), (-neck_w, 0.0))
    outer = _pts((-neck_w - band, 0.0), (0.0, depth + band * 1.6), (neck_w + band, 0.0))
  else:
    depth = {'crew-neck': 0.11, 'scoop-neck': 0.26}[kind] if depth is None else depth
    front = _arc(0.0, 0.0, neck_w, depth, 0, 180, 14)
    outer = _arc(0.0, 0.0, neck_w + band, depth + band, 180, 0, 14)
  return [fill(SHADE, np.concatenate([back, front]), layer=layer),
          fill(TRIM, np.concatenate([front, outer]), layer=layer)]


def _hem_band(half_w: float, y0: float, y1: float, n_ribs: int = 14, layer: int = 0,
              bottom_half_w: float | None = None) -> list[Shape]:
  """A ribbed band across the body (sweater hems, waistbands)."""
  bottom_half_w = half_w if bottom_half_w is None else bottom_half_w
  band = _pts((-half_w, y0), (half_w, y0), (bottom_half_w, y1), (-bottom_half_w, y1))
  return ([fill(TRIM, band, layer=layer)]
          + _rib_lines(band[[0, 1]], band[[3, 2]], n_ribs, layer))


def _hood(layer: int = 0, open_front: bool = False) -> list[Shape]:
  """A hood lying flat above the shoulders (behind the body: give it a lower layer)."""
  outer = np.concatenate([_pts((-0.17, 0.12)), _arc(0.0, -0.1, 0.25, 0.3, 150, 390, 24)[1:-1],
                          _pts((0.17, 0.12))])
  opening = np.concatenate([_arc(0.0, -0.07, 0.15, 0.2, 180, 360, 14),
                            _pts((0.12, 0.06), (0.02 if open_front else 0.0, 0.16)),
                            _pts((-0.02, 0.16)) if open_front else np.zeros((0, 2)),
                            _pts((-0.12, 0.06))])
  return [fill(BODY, outer, layer=layer), fill(SHADE, opening, layer=layer + 1),
          line(LINE, _arc(0.0, -0.07, 0.18, 0.23, 190, 350, 12), layer=layer + 1)]


def _lapels(peak: bool, roll_y: float, neck_w: float = 0.12, layer: int = 2) -> list[Shape]:
  """Notch or peak lapels and the opening between them (tailored jackets, coats)."""
  opening = _pts((-neck_w, 0.0), (neck_w, 0.0), (0.0, roll_y))
  if peak:
    right = _pts((neck_w - 0.01, -0.02), (neck_w + 0.07, 0.1), (neck_w + 0.18, 0.05),
                 (neck_w + 0.12, 0.2), (0.025, roll_y), (0.0, roll_y - 0.04))
  else:
    right = _pts((neck_w - 0.01, -0.02), (neck_w + 0.06, 0.09), (neck_w + 0.04, 0.13),
                 (neck_w + 0.13, 0.16), (0.025, roll_y), (0.0, roll_y - 0.04))
  return ([fill(SHADE, opening, layer=layer - 1)]
          + _both_sides([fill(BODY, right, layer=layer)]))


# ----------------------------------------------------------------------------
# Drawers: attribute values -> shapes. One per sub-category.
# ----------------------------------------------------------------------------

def _draw_t_shirt(a: Mapping[str, str]) -> list[Shape]:
  neck_w, length = 0.13, 1.0
  shapes = []
  if a['sleeve'] == 'sleeveless':
    torso = _torso(neck_w, (0.27, 0.03), (0.37, 0.36), 0.37, length, armhole_inset=0.07)
  else:
    shoulder, armpit = (0.40, 0.06), (0.36, 0.33)
    angle, sleeve_len, cuff = (62, 0.28, 0.2) if a['sleeve'] == 'short-sleeve' else (24, 0.8, 0.15)
    shapes += _both_sides(_sleeve(shoulder, armpit, angle, sleeve_len, cuff))
    torso = _torso(neck_w, shoulder, armpit, 0.37, length)
  shapes.append(fill(BODY, torso))
  shapes += _neckline(a['neckline'], neck_w)
  shapes.append(line(LINE, [(-0.37, length - 0.04), (0.37, length - 0.04)]))
  return shapes


def _draw_tank_top(a: Mapping[str, str]) -> list[Shape]:
  strap_w = 0.05 if a['strap'] == 'thin-strap' else 0.13
  strap_x, length = 0.19, 1.0
  inner, outer = strap_x - strap_w / 2, strap_x + strap_w / 2
  armpit = (0.34, 0.42)
  right = np.concatenate([
      _arc(0.0, 0.0, inner, 0.16, 90, 0, 8),  # back neckline
      _pts((outer, 0.0)),
      _bezier((outer, 0.0), (outer - 0.02, armpit[1]), armpit, 10)[1:],
      _pts((0.36, length), (0.0, length))])
  back = _arc(0.0, 0.0, inner, 0.16, 180, 0, 10)
  depth = 0.42 if a['neckline'] == 'scoop-neck' else 0.5
  if a['neckline'] == 'scoop-neck':
    front = _arc(0.0, 0.0, inner, depth, 0, 180, 16)
    band = _arc(0.0, 0.0, inner + 0.025, depth + 0.025, 180, 0, 16)
  else:
    front = _pts((inner, 0.0), (0.0, depth), (-inner, 0.0))
    band = _pts((-inner - 0.025, 0.0), (0.0, depth + 0.04), (inner + 0.025, 0.0))
  armhole_band = [line(LINE, _bezier((outer - 0.025, 0.0), (outer - 0.045, armpit[1] + 0.025),
                                     (armpit[0] - 0.005, armpit[1] + 0.025), 10))]
  return ([fill(BODY, _symmetric(right)),
           fill(SHADE, np.concatenate([back, front])),
           fill(TRIM, np.concatenate([front, band]))]
          + _both_sides(armhole_band)
          + [line(LINE, [(-0.36, length - 0.04), (0.36, length - 0.04)])])


def _draw_shirt(a: Mapping[str, str]) -> list[Shape]:
  neck_w, length = 0.11, 1.02
  shoulder, armpit = (0.40, 0.07), (0.36, 0.34)
  if a['sleeve'] == 'short-sleeve':
    sleeve = _sleeve(shoulder, armpit, 60, 0.3, 0.2)
  else:
    sleeve = _sleeve(shoulder, armpit, 20, 0.86, 0.14, cuff_h=0.09)
    along, across = _sleeve_frame(20)
    cuff_button = np.asarray(shoulder) + 0.81 * along + 0.07 * across
    sleeve.append(fill(SHADE, _ellipse(*cuff_button, 0.014, 0.014, 8)))
  shapes = _both_sides(sleeve)
  shapes.append(fill(BODY, _torso(neck_w, shoulder, armpit, 0.37, length - 0.05, hem_curve=0.06)))
  # Button placket down the centre front, chest pocket.
  shapes += [line(LINE, [(x, 0.1), (x, length)]) for x in (-0.035, 0.035)]
  shapes += _buttons([0.0], np.arange(0.17, length - 0.05, 0.15))
  shapes.append(line(LINE, _rect(0.11, 0.3, 0.25, 0.46), closed=True))
  shapes.append(line(LINE, [(0.11, 0.34), (0.25, 0.34)]))
  # Collar (above the placket).
  shapes.append(fill(SHADE, _pts((-neck_w, 0.0), (neck_w, 0.0), (0.0, 0.1))))
  if a['collar'] == 'point-collar':
    band = _rect(-neck_w - 0.01, -0.05, neck_w + 0.01, 0.01)
    leaf = _pts((0.005, 0.1), (neck_w + 0.01, -0.04), (neck_w + 0.06, 0.02), (0.1, 0.19))
    shapes += [fill(BODY, band, layer=1)] + _both_sides([fill(BODY, leaf, layer=1)])
  else:
    band = np.concatenate([_pts((-neck_w - 0.01, -0.06), (neck_w + 0.01, -0.06)),
                           _arc(0.0, -0.01, neck_w + 0.01, 0.11, 0, 180, 12)])
    inner = np.concatenate([_pts((-neck_w + 0.01, -0.045), (neck_w - 0.01, -0.045)),
                            _arc(0.0, -0.035, neck_w - 0.01, 0.03, 0, 180, 10)])
    shapes += [fill(BODY, band, layer=1), fill(SHADE, inner, layer=1),
               fill(SHADE, _rect(-0.005, 0.03, 0.005, 0.1), layer=1, outline=False)]
  return shapes


def _draw_sweater(a: Mapping[str, str]) -> list[Shape]:
  neck_w = 0.13
  length = 0.72 if a['fit'] == 'cropped' else 1.15
  shoulder, armpit = (0.44, 0.1), (0.40, 0.38)
  shapes = _both_sides(_sleeve(shoulder, armpit, 20, 0.86, 0.15, cuff_h=0.09))
  shapes.append(fill(BODY, _torso(neck_w, shoulder, armpit, 0.38, length)))
  shapes += _hem_band(0.38, length - 0.09, length, bottom_half_w=0.36)
  neck = _neckline(a['neckline'], neck_w, depth=0.32 if a['neckline'] == 'v-neck' else None,
                   band=0.035)
  shapes += neck
  return shapes


def _draw_hoodie(a: Mapping[str, str]) -> list[Shape]:
  neck_w = 0.12
  length = 0.72 if a['fit'] == 'cropped' else 1.12
  zip_up = a['closure'] == 'zip-up'
  shoulder, armpit = (0.43, 0.09), (0.40, 0.37)
  shapes = _hood(layer=0, open_front=zip_up)
  shapes += _both_sides(_sleeve(shoulder, armpit, 20, 0.86, 0.15, cuff_h=0.09, layer=2))
  shapes.append(fill(BODY, _torso(neck_w, shoulder, armpit, 0.38, length), layer=2))
  shapes += _hem_band(0.38, length - 0.09, length, bottom_half_w=0.36, layer=2)
  shapes.append(fill(SHADE, _pts((-0.1, 0.02), (0.1, 0.02), (0.0, 0.12)), layer=2))
  for x in (-0.06, 0.06):  # drawstrings with metal tips
    shapes += [line(LINE, [(x, 0.08), (x * 1.15, 0.36)], width=DETAIL_WIDTH, layer=3),
               fill(METAL, _rect(x * 1.15 - 0.012, 0.36, x * 1.15 + 0.012, 0.41), layer=3)]
  pocket_top, pocket_bottom = length * 0.55, length - 0.13
  if zip_up:
    shapes.append(line(METAL, [(0.0, 0.12), (0.0, length)], width=DETAIL_WIDTH, layer=3))
    shapes.append(fill(METAL, _rect(-0.015, 0.13, 0.015, 0.2), layer=3))
    shapes += _both_sides([line(LINE, [(0.14, pocket_top), (0.2, pocket_bottom)],
                                width=DETAIL_WIDTH, layer=3)])
  else:
    pocket = _pts((-0.2, pocket_top), (0.2, pocket_top), (0.27, pocket_bottom),
                  (-0.27, pocket_bottom))
    shapes.append(line(LINE, pocket, closed=True, width=DETAIL_WIDTH, layer=3))
  return shapes


def _draw_cardigan(a: Mapping[str, str]) -> list[Shape]:
  neck_w = 0.12
  length = 0.72 if a['fit'] == 'cropped' else 1.15
  shoulder, armpit = (0.42, 0.08), (0.39, 0.36)
  v_neck = a['neckline'] == 'v-neck'
  depth = 0.42 if v_neck else 0.11
  shapes = _both_sides(_sleeve(shoulder, armpit, 18, 0.86, 0.14, cuff_h=0.08))
  shapes.append(fill(BODY, _torso(neck_w, shoulder, armpit, 0.37, length)))
  shapes += _hem_band(0.37, length - 0.08, length)
  shapes += _neckline(a['neckline'], neck_w, depth=depth)
  # Button band down the centre front.
  shapes.append(fill(TRIM, _rect(-0.03, depth + 0.02, 0.03, length)))
  shapes.append(line(LINE, [(0.0, depth + 0.02), (0.0, length)]))
  shapes += _buttons([0.0], np.linspace(depth + 0.07, length - 0.12, 5 if v_neck else 6))
  return shapes


def _draw_blazer(a: Mapping[str, str]) -> list[Shape]:
  length = 1.0
  double = a['closure'] == 'double-breasted'
  shoulder, armpit = (0.42, 0.04), (0.38, 0.34)
  roll_y = 0.46
  shapes = _both_sides(_sleeve(shoulder, armpit, 14, 0.9, 0.15, hem_stitch=False))
  along, across = _sleeve_frame(14)
  cuff = np.asarray(shoulder) + 0.84 * along
  shapes += _both_sides(_buttons([cuff[0] + 0.05 * across[0]], [cuff[1]], 0.012))
  shapes.append(fill(BODY, _torso(0.12, shoulder, armpit, 0.37, length, waist=(0.34, 0.6))))
  shapes += _lapels(a['lapel'] == 'peak-lapel', roll_y)
  # Front edge below the top button, pockets.
  if double:
    shapes.append(line(LINE, [(-0.14, roll_y - 0.02), (-0.14, length)], layer=2))
    shapes += _buttons([-0.09, 0.09], [roll_y + 0.06, roll_y + 0.22])
  else:
    shapes.append(line(LINE, np.concatenate([_pts((0.02, roll_y)), _bezier(
        (0.02, length - 0.12), (0.02, length), (0.12, length), 6)]), layer=2))
    shapes += _buttons([0.02], [roll_y + 0.06, roll_y + 0.22])
  shapes += _both_sides([line(LINE, _rect(0.19, 0.7, 0.33, 0.76), closed=True, layer=2)])
  shapes.append(line(LINE, [(0.2, 0.34), (0.31, 0.32)], width=DETAIL_WIDTH, layer=2))
  return shapes


def _quilted_side(p0, p1, n: int, bulge: float, outward: np.ndarray,
                  points_per_channel: int = 5) -> np.ndarray:
  """Points from p0 to p1 (excluded) bulging outwards between n channels."""
  p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
  t = np.linspace(0.0, 1.0, n * points_per_channel + 1)[:-1]
  swell = np.abs(np.sin(np.pi * n * t))[:, None]
  return p0 + t[:, None] * (p1 - p0) + bulge * swell * np.asarray(outward)


def _draw_puffer_jacket(a: Mapping[str, str]) -> list[Shape]:
  length = 0.78 if a['fit'] == 'cropped' else 1.15
  shoulder, armpit = (0.44, 0.07), (0.44, 0.36)
  channels = round((length - armpit[1]) / 0.13)
  shapes = []
  if a['collar'] == 'hooded':
    shapes += _hood(layer=0, open_front=True)
    shapes.append(line(LINE, _arc(0.0, -0.1, 0.21, 0.26, 200, 340, 10), layer=1))
  # Sleeves: thick, with bulging outer edges and channels across.
  angle, sleeve_len, cuff = 16, 0.84, 0.2
  along, across = _sleeve_frame(angle)
  top_end = np.asarray(shoulder) + sleeve_len * along
  bottom_end = top_end + cuff * across
  n_sleeve = 6
  outer = _quilted_side(shoulder, top_end, n_sleeve, 0.025, -across)
  inner = _quilted_side(bottom_end, armpit, n_sleeve, 0.02, across)
  sleeve = [fill(BODY, np.concatenate([outer, _pts(top_end, bottom_end), inner]), layer=2)]
  for k in range(1, n_sleeve):
    t = k / n_sleeve
    sleeve.append(line(LINE, [np.asarray(shoulder) + t * (top_end - shoulder),
                              np.asarray(armpit) + t * (bottom_end - armpit)], layer=2))
  shapes += _both_sides(sleeve)
  side = _quilted_side(armpit, (0.43, length), channels, 0.035, np.array([1.0, 0.0]))[1:]
  shapes.append(fill(BODY, _torso(0.13, shoulder, armpit, 0.43, length, side_points=side),
                     layer=2))
  ys = np.linspace(armpit[1], length, channels + 1)[:-1]
  shapes += [line(LINE, [(-0.43, y), (0.43, y)], layer=2) for y in np.concatenate([[0.2], ys])]
  if a['collar'] == 'stand-collar':
    collar = np.concatenate([_pts((-0.15, -0.1), (0.15, -0.1)), _arc(0.0, 0.0, 0.15, 0.1, 0, 180, 10)])
    shapes += [fill(BODY, collar, layer=3),
               fill(SHADE, _ellipse(0.0, -0.1, 0.14, 0.035, 14), layer=3)]
  else:
    shapes.append(fill(SHADE, _pts((-0.13, 0.0), (0.13, 0.0), (0.0, 0.08)), layer=2))
  shapes.append(line(METAL, [(0.0, -0.1 if a['collar'] == 'stand-collar' else 0.06), (0.0, length)],
                     width=DETAIL_WIDTH, layer=4))
  return shapes


def _draw_coat(a: Mapping[str, str]) -> list[Shape]:
  length = 1.4 if a['length'] == 'knee-length' else 1.95
  double = a['closure'] == 'double-breasted'
  shoulder, armpit = (0.42, 0.05), (0.38, 0.35)
  roll_y = 0.5
  hem_w = 0.42 + 0.04 * (length - 1.4)
  shapes = _both_sides(_sleeve(shoulder, armpit, 12, 0.95, 0.16, hem_stitch=False))
  along, across = _sleeve_frame(12)
  tab = np.asarray(shoulder) + 0.83 * along
  shapes += _both_sides([fill(TRIM, np.stack([tab, tab + 0.05 * along, tab + 0.05 * along
                                              + 0.16 * across, tab + 0.16 * across]))])
  shapes.append(fill(BODY, _torso(0.12, shoulder, armpit, hem_w, length, waist=(0.36, 0.62))))
  shapes += _lapels(False, roll_y)
  rows = np.arange(roll_y + 0.06, length * 0.72, 0.16)
  if double:
    shapes.append(line(LINE, [(-0.14, roll_y - 0.02), (-0.14, length)], layer=2))
    shapes += _buttons([-0.1, 0.1], rows)
  else:
    shapes.append(line(LINE, [(0.02, roll_y), (0.02, length)], layer=2))
    shapes += _buttons([0.02], rows)
  shapes += _both_sides([line(LINE, _rect(0.2, 0.78, 0.35, 0.85), closed=True, layer=2)])
  return shapes


def _dress_bodice(sleeve: str, neckline: str, waist_y: float) -> tuple[list[Shape], list]:
  """Sleeves and right-half torso points (neck to waist) of a dress bodice."""
  neck_w = 0.12
  if sleeve == 'sleeveless':
    shoulder, armpit = (0.22, 0.03), (0.3, 0.3)
    sleeves, inset = [], 0.05
  else:
    shoulder, armpit = (0.3, 0.05), (0.29, 0.3)
    angle, sleeve_len, cuff = (60, 0.24, 0.16) if sleeve == 'short-sleeve' else (16, 0.7, 0.1)
    sleeves, inset = _both_sides(_sleeve(shoulder, armpit, angle, sleeve_len, cuff)), 0.0
  right = [_arc(0.0, 0.0, neck_w, 0.035, 90, 0, 8), _pts(shoulder)]
  if inset:
    control = (shoulder[0] - inset, armpit[1])
    right.append(_bezier(shoulder, control, armpit, 10)[1:])
  else:
    right.append(_pts(armpit))
  right.append(_pts((0.23, waist_y)))
  return sleeves + _neckline(neckline, neck_w, layer=1, depth=None), right


_DRESS_SKIRT_LENGTHS = {'mini': 0.42, 'knee-length': 0.62, 'midi': 0.85, 'maxi': 1.3}


def _draw_a_line_dress(a: Mapping[str, str]) -> list[Shape]:
  waist_y = 0.5
  skirt = _DRESS_SKIRT_LENGTHS[a['length']]
  hem_y, hem_w = waist_y + skirt, 0.23 + 0.5 * skirt
  details, right = _dress_bodice(a['sleeve'], 'crew-neck', waist_y)
  right.append(_arc(0.0, hem_y, hem_w, 0.05, 0, 90, 10))
  body = fill(BODY, _symmetric(np.concatenate(right)))
  seam = line(LINE, [(-0.23, waist_y), (0.23, waist_y)], width=DETAIL_WIDTH, layer=1)
  folds = [line(LINE, [(x * 0.23, waist_y + 0.03), (x * hem_w * 0.85, hem_y - 0.02)], layer=1)
           for x in (-0.5, 0.5)]
  return details + [body, seam] + folds


def _draw_sheath_dress(a: Mapping[str, str]) -> list[Shape]:
  skirt = _DRESS_SKIRT_LENGTHS[a['length']]
  waist_y, hip_y = 0.5, 0.72
  hem_y = waist_y + skirt + 0.1
  details, right = _dress_bodice('sleeveless', a['neckline'], waist_y)
  right += [_bezier((0.23, waist_y), (0.33, hip_y - 0.12), (0.31, hip_y), 8)[1:],
            _pts((0.27, hem_y), (0.0, hem_y))]
  body = fill(BODY, _symmetric(np.concatenate(right)))
  darts = _both_sides([line(LINE, [(0.13, waist_y - 0.15), (0.14, waist_y), (0.15, hip_y - 0.02)],
                            layer=1)])
  vent = line(LINE, [(0.0, hem_y - 0.12), (0.0, hem_y)], width=DETAIL_WIDTH, layer=1)
  return details + [body] + darts + [vent]


def _draw_slip_dress(a: Mapping[str, str]) -> list[Shape]:
  skirt = _DRESS_SKIRT_LENGTHS[a['length']]
  top_y, waist_y = 0.32, 0.6
  hem_y, hem_w = waist_y + skirt, 0.25 + 0.28 * skirt
  right = np.concatenate([_pts((0.0, top_y), (0.27, top_y - 0.02), (0.28, top_y + 0.06)),
                          _pts((0.24, waist_y)), _arc(0.0, hem_y, hem_w, 0.04, 0, 90, 10)])
  shapes = [fill(BODY, _symmetric(right))]
  shapes += _both_sides([fill(TRIM, _rect(0.16, 0.0, 0.185, top_y + 0.01), layer=1)])
  if a['neckline'] == 'v-neck':
    shapes.append(fill(SHADE, _pts((-0.24, top_y - 0.015), (0.24, top_y - 0.015), (0.0, top_y + 0.24)),
                       layer=1))
  else:
    shapes.append(line(LINE, [(-0.26, top_y + 0.035), (0.26, top_y + 0.035)], layer=1))
  shapes += [line(LINE, [(x * 0.22, waist_y - 0.1), (x * hem_w * 0.8, hem_y - 0.02)], layer=1)
             for x in (-0.45, 0.45)]
  return shapes


_SKIRT_LENGTHS = {'mini': 0.5, 'knee-length': 0.8, 'midi': 1.0, 'maxi': 1.45}


def _waist(belted: bool, half_w: float, height: float = 0.09, layer: int = 1) -> list[Shape]:
  """A waistband, with a belt and buckle or with a button."""
  shapes = [fill(TRIM, _rect(-half_w, 0.0, half_w, height), layer=layer)]
  if belted:
    shapes += [fill(SHADE, _rect(-half_w, 0.015, half_w, height - 0.015), layer=layer),
               fill(METAL, _rect(-0.05, -0.005, 0.05, height + 0.005), layer=layer + 1),
               fill(SHADE, _rect(-0.032, 0.015, 0.032, height - 0.015), layer=layer + 1,
                    outline=False)]
  else:
    shapes += _buttons([0.0], [height / 2], 0.016)
  return shapes


def _draw_pleated_skirt(a: Mapping[str, str]) -> list[Shape]:
  skirt = _SKIRT_LENGTHS[a['length']]
  waist_w, hem_y = 0.3, 0.09 + skirt
  hem_w = waist_w + 0.35 * skirt
  n_pleats = 12
  xs = np.linspace(-hem_w, hem_w, 2 * n_pleats + 1)
  hem = np.stack([xs, hem_y + 0.015 * (np.arange(xs.size) % 2)], axis=1)[::-1]
  body = np.concatenate([_pts((-waist_w, 0.05), (waist_w, 0.05)), hem])
  pleats = [line(LINE, [(x * waist_w / hem_w, 0.09), (x, hem_y)])
            for x in np.linspace(-hem_w, hem_w, n_pleats + 1)[1:-1]]
  return [fill(BODY, body)] + pleats + _waist(a['belt'] == 'belted', waist_w + 0.005)


def _draw_pencil_skirt(a: Mapping[str, str]) -> list[Shape]:
  skirt = _SKIRT_LENGTHS[a['length']]
  hem_y = 0.09 + skirt
  right = _pts((0.0, 0.05), (0.27, 0.05), (0.32, 0.3), (0.31, min(0.45, hem_y)),
               (0.27, hem_y), (0.0, hem_y))
  darts = _both_sides([line(LINE, [(0.14, 0.09), (0.15, 0.25)])])
  vent = line(LINE, [(0.0, hem_y - 0.15 * skirt), (0.0, hem_y)], width=DETAIL_WIDTH)
  return ([fill(BODY, _symmetric(right))] + darts + [vent]
          + _waist(a['belt'] == 'belted', 0.275))


def _trouser_body(leg_top_w: float, hip_w: float, crotch_y: float, hem_y: float,
                  hem_outer: float, hem_inner: float) -> np.ndarray:
  """Waist, hips and two legs as one polygon."""
  right = _pts((0.0, 0.05), (leg_top_w, 0.05), (hip_w, crotch_y - 0.05), (hem_outer, hem_y),
               (hem_inner, hem_y), (0.0, crotch_y))
  return _symmetric(right)


def _draw_trousers(a: Mapping[str, str]) -> list[Shape]:
  hem_y = 1.0 if a['length'] == 'cropped' else 1.4
  outer, inner = (0.22, 0.07) if a['leg'] == 'slim-leg' else (0.36, 0.015)
  crotch_y = 0.38
  shapes = [fill(BODY, _trouser_body(0.28, 0.3, crotch_y, hem_y, outer, inner))]
  shapes += _both_sides([
      line(LINE, [(0.28, 0.24), (0.17, 0.09)]),  # slant pocket
      line(LINE, [(0.15, 0.12), ((outer + inner) / 2, hem_y)]),  # crease
      line(LINE, [(outer, hem_y - 0.03), (inner, hem_y - 0.03)])])
  shapes.append(line(LINE, _bezier((0.04, 0.09), (0.04, 0.3), (0.0, 0.32), 6)))  # fly
  shapes += [fill(TRIM, _rect(-0.285, 0.0, 0.285, 0.09), layer=1)]
  shapes += [fill(SHADE, _rect(x - 0.012, -0.01, x + 0.012, 0.1), layer=1)
             for x in (-0.2, 0.2, -0.08, 0.08)]
  shapes += _buttons([0.0], [0.045], 0.015)
  return shapes


def _draw_joggers(a: Mapping[str, str]) -> list[Shape]:
  hem_y = 1.0 if a['length'] == 'cropped' else 1.35
  outer, inner, cuff = 0.2, 0.075, 0.09
  crotch_y = 0.4
  shapes = [fill(BODY, _trouser_body(0.29, 0.32, crotch_y, hem_y - cuff + 0.01, outer + 0.01,
                                     inner - 0.01))]
  for sign in (1, -1):
    x0, x1 = sign * inner, sign * outer
    band = _pts((min(x0, x1) + 0.005, hem_y - cuff), (max(x0, x1) - 0.005, hem_y - cuff),
                (max(x0, x1) - 0.005, hem_y), (min(x0, x1) + 0.005, hem_y))
    shapes.append(fill(TRIM, band, layer=1))
    shapes += _rib_lines(band[[0, 1]], band[[3, 2]], 6, layer=1)
  shapes += _hem_band(0.295, 0.0, 0.11, n_ribs=18, layer=1)
  for x in (-0.04, 0.04):  # drawstring
    shapes += [line(LINE, [(x, 0.08), (x * 1.6, 0.3)], width=DETAIL_WIDTH, layer=2),
               fill(METAL, _rect(x * 1.6 - 0.012, 0.3, x * 1.6 + 0.012, 0.34), layer=2)]
  if a['pocket'] == 'zip-pocket':
    shapes += _both_sides([line(METAL, [(0.22, 0.15), (0.26, 0.38)], width=DETAIL_WIDTH * 1.5),
                           fill(METAL, _rect(0.205, 0.15, 0.235, 0.21))])
  else:
    shapes += _both_sides([fill(SHADE, _pts((0.17, 0.11), (0.22, 0.11), (0.32, 0.31), (0.32, 0.36)))])
  return shapes


def _draw_shorts(a: Mapping[str, str]) -> list[Shape]:
  hem_y = 0.6 if a['length'] == 'mid-thigh' else 0.86
  outer, inner, crotch_y = 0.36, 0.03, 0.4
  shapes = [fill(BODY, _trouser_body(0.29, 0.32, crotch_y, hem_y, outer, inner))]
  if a['hem'] == 'cuffed':
    shapes += _both_sides([fill(TRIM, _pts((inner - 0.005, hem_y - 0.08), (outer + 0.012, hem_y - 0.08),
                                           (outer + 0.015, hem_y + 0.005), (inner - 0.005, hem_y + 0.005)),
                                layer=1)])
  else:
    shapes += _both_sides([line(LINE, [(inner, hem_y - 0.03), (outer, hem_y - 0.03)])])
  shapes += _both_sides([line(LINE, [(0.29, 0.24), (0.18, 0.09)])])
  shapes.append(line(LINE, _bezier((0.04, 0.09), (0.04, 0.3), (0.0, 0.32), 6)))
  shapes += [fill(TRIM, _rect(-0.295, 0.0, 0.295, 0.09), layer=1)]
  shapes += [fill(SHADE, _rect(x - 0.012, -0.01, x + 0.012, 0.1), layer=1)
             for x in (-0.21, 0.21, -0.09, 0.09)]
  shapes += _buttons([0.0], [0.045], 0.015)
  return shapes


# Shoes: side view of a right shoe, toe on the left, ground at y = 0.
_HEEL_HEIGHTS = {'flat': 0.04, 'mid-heel': 0.16, 'high-heel': 0.32}
_SHOE_BACK_X = 0.56


def _shoe_base(heel: str, sole_t: float, sole_role: str, toe: str = 'round-toe') -> tuple[
    list[Shape], np.ndarray]:
  """The sole and heel of a shoe, and its insole line (toe -> heel back, [N, 2])."""
  heel_h = _HEEL_HEIGHTS[heel]
  toe_x = -0.74 if toe == 'pointed-toe' else -0.62
  seat_y = -heel_h - sole_t
  insole = np.concatenate([
      _pts((toe_x, -sole_t * 0.8)),
      _bezier((toe_x + 0.12, -sole_t), (-0.2, -sole_t), (-0.2, -sole_t), 3)[:1],
      _bezier((-0.2, -sole_t), (0.1, -sole_t), (0.32, seat_y), 8),
      _pts((_SHOE_BACK_X, seat_y))])
  # Forefoot sole on the ground, arch lifted, heel seat.
  bottom = insole + np.array([0.0, sole_t])
  bottom[0] = (toe_x + 0.05, -0.01)
  sole = np.concatenate([insole, bottom[::-1]])
  shapes = [fill(sole_role, sole, layer=2)]
  if heel_h > sole_t:
    top_y = seat_y + sole_t
    if heel == 'high-heel':
      block = _pts((0.34, top_y), (_SHOE_BACK_X, top_y), (0.52, 0.0), (0.47, 0.0), (0.45, top_y * 0.5))
    else:
      block = _pts((0.36, top_y), (_SHOE_BACK_X, top_y), (0.54, 0.0), (0.41, 0.0))
    shapes.append(fill(sole_role, block, layer=2))
  elif heel == 'flat':
    shapes.append(line(LINE, [(0.3, -0.01), (0.33, seat_y + sole_t)], layer=3))
  return shapes, insole


def _draw_sneakers(a: Mapping[str, str]) -> list[Shape]:
  high = a['height'] == 'high-top'
  sole = np.concatenate([_arc(-0.52, -0.06, 0.1, 0.06, 90, 270, 8),
                         _arc(0.5, -0.06, 0.1, 0.06, -90, 90, 8)])
  if high:
    collar = _pts((-0.02, -0.84), (0.08, -0.9), (0.46, -0.88), (0.55, -0.62))
    eyestay_end = (0.03, -0.8)
  else:
    collar = _pts((0.0, -0.52), (0.1, -0.5), (0.3, -0.44), (0.52, -0.5))
    eyestay_end = (0.0, -0.47)
  upper = np.concatenate([
      _pts((-0.6, -0.1)), _arc(-0.44, -0.12, 0.17, 0.16, 180, 260, 6),
      _pts((-0.25, -0.33), (-0.06, -0.45)), collar, _pts((0.6, -0.3), (0.6, -0.1))])
  shapes = [fill(BODY, upper, layer=0)]
  shapes.append(line(LINE, _arc(-0.4, -0.11, 0.15, 0.13, 185, 268, 6), width=DETAIL_WIDTH,
                     layer=1))  # toe cap
  shapes.append(fill(TRIM, np.concatenate([_pts((0.46, -0.12)), collar[-1:], _pts((0.6, -0.3),
                                                                                  (0.6, -0.12))]),
                     layer=1))  # heel counter
  start = np.array([-0.3, -0.31])
  direction = np.asarray(eyestay_end) - start
  across = np.array([direction[1], -direction[0]]) / np.linalg.norm(direction)
  shapes.append(line(LINE, _along(start, eyestay_end, 2) - 0.06 * across, width=DETAIL_WIDTH,
                     layer=1))  # eyestay
  if high:
    shapes.append(fill(TRIM, _ellipse(0.36, -0.55, 0.06, 0.06, 12), layer=1))
  if a['fastening'] == 'lace-up':
    n = 7 if high else 4
    centre = _along(start + 0.08 * direction, eyestay_end, n) - 0.11 * across
    low, high_side = centre - 0.04 * across, centre + 0.04 * across
    for k in range(n - 1):
      for p, q in ((low[k], high_side[k + 1]), (high_side[k], low[k + 1])):
        shapes += [line(LINE, [p, q], width=DETAIL_WIDTH * 2.4, layer=2),
                   line(LACE, [p, q], width=DETAIL_WIDTH * 1.3, layer=2)]
    shapes += [fill(SHADE, _ellipse(*p, 0.012, 0.012, 8), layer=3, outline=False)
               for p in np.concatenate([low, high_side])]
  else:
    for c in _along(start + 0.2 * direction, start + 0.8 * direction, 3 if high else 2):
      along = 0.045 * direction / np.linalg.norm(direction)
      strap = np.stack([c + 0.01 * across - along, c + 0.01 * across + along,
                        c - 0.26 * across + along, c - 0.26 * across - along])
      shapes.append(fill(SHADE, strap, layer=2))
  shapes += [fill(SOLE_LIGHT, sole, layer=3),
             line(LINE, [(-0.55, -0.065), (0.55, -0.065)], layer=3)]
  return shapes


def _draw_boots(a: Mapping[str, str]) -> list[Shape]:
  sole_t = 0.06
  base, insole = _shoe_base(a['heel'], sole_t, SOLE_DARK)
  seat_y = insole[-1, 1]
  top_y = seat_y - (0.55 if a['height'] == 'ankle' else 1.35)
  lift = _HEEL_HEIGHTS[a['heel']]
  upper = np.concatenate([
      insole,
      _pts((0.58, seat_y - 0.25), (0.46, seat_y - 0.45), (0.46, top_y), (0.02, top_y),
           (0.02 - 0.04 * lift, -sole_t - 0.4 - lift * 0.5)),
      _bezier((-0.2, -sole_t - 0.3 - lift * 0.3), (-0.55, -sole_t - 0.25), (-0.62, -sole_t * 0.8), 8)])
  shapes = [fill(BODY, upper, layer=0)]
  shapes.append(line(LINE, [(0.02, top_y + 0.04), (0.46, top_y + 0.04)], layer=1))
  shapes.append(line(LINE, [(0.4, top_y + 0.08), (0.4, seat_y - 0.1)], width=DETAIL_WIDTH, layer=1))
  shapes.append(fill(METAL, _rect(0.385, top_y + 0.08, 0.415, top_y + 0.15), layer=1))
  tab = np.concatenate([_pts((0.44, top_y + 0.02)), _arc(0.47, top_y, 0.05, 0.06, 180, 360, 8)[1:],
                        _pts((0.5, top_y + 0.02))])
  shapes.append(fill(TRIM, tab, layer=1))
  return shapes + base


def _draw_pumps(a: Mapping[str, str]) -> list[Shape]:
  sole_t = 0.025
  base, insole = _shoe_base(a['heel'], sole_t, SHADE, a['toe'])
  seat_y = insole[-1, 1]
  lift = _HEEL_HEIGHTS[a['heel']]
  throat = (-0.16, -sole_t - 0.2 - lift * 0.45)
  back_top = (_SHOE_BACK_X + 0.01, seat_y - 0.22)
  toe_tip = insole[0]
  if a['toe'] == 'pointed-toe':
    vamp = _bezier(throat, (-0.46, -sole_t - 0.16), (toe_tip[0], toe_tip[1] - 0.01), 8)
  else:
    vamp = np.concatenate([_bezier(throat, (-0.42, -sole_t - 0.22), (-0.53, -sole_t - 0.15), 6),
                           _arc(-0.5, -sole_t * 0.8, 0.12, 0.14, 250, 180, 5)[1:]])
  topline = _bezier(back_top, (0.2, seat_y - 0.04), throat, 10)
  opening = np.concatenate([topline, _bezier(throat, (0.2, seat_y - 0.13), back_top, 10)])
  return [fill(BODY, np.concatenate([insole, topline, vamp])), fill(SHADE, opening, layer=1)] + base


def _draw_loafers(a: Mapping[str, str]) -> list[Shape]:
  sole_t = 0.05
  base, insole = _shoe_base(a['heel'], sole_t, SOLE_DARK)
  seat_y = insole[-1, 1]
  lift = _HEEL_HEIGHTS[a['heel']]
  throat = (-0.1, -sole_t - 0.33 - lift * 0.45)
  back_top = (_SHOE_BACK_X + 0.01, seat_y - 0.27)
  vamp = np.concatenate([_bezier(throat, (-0.46, -sole_t - 0.36), (-0.57, -sole_t - 0.2), 7),
                         _arc(-0.5, -sole_t * 0.8, 0.12, 0.16, 240, 180, 5)[1:]])
  topline = _bezier(back_top, (0.2, seat_y - 0.17), throat, 10)
  opening = np.concatenate([topline, _bezier(throat, (0.2, seat_y - 0.24), back_top, 10)])
  shapes = [fill(BODY, np.concatenate([insole, topline, vamp])), fill(SHADE, opening, layer=1)]
  apron = _bezier((-0.14, throat[1] + 0.03), (-0.5, throat[1] + 0.02), (-0.58, -sole_t - 0.1), 8)
  shapes.append(line(LINE, apron, width=DETAIL_WIDTH, layer=1))  # moc-toe seam
  strap_y = throat[1] + 0.07
  if a['vamp'] == 'penny-strap':
    strap = _pts((-0.36, strap_y - 0.03), (-0.08, strap_y - 0.06), (-0.06, strap_y + 0.06),
                 (-0.36, strap_y + 0.07))
    shapes += [fill(SHADE, strap, layer=2),
               fill(LINE, _ellipse(-0.21, strap_y + 0.005, 0.045, 0.016, 10), layer=2)]
  elif a['vamp'] == 'tassel':
    for dx in (0.0, 0.08):
      knot = np.array([-0.2 + dx, strap_y - 0.03])
      shapes += [line(LINE, [knot, knot + (-0.05, 0.1)], width=DETAIL_WIDTH, layer=2),
                 fill(TRIM, _pts(knot + (-0.08, 0.09), knot + (-0.03, 0.09), knot + (-0.01, 0.21),
                                 knot + (-0.11, 0.21)), layer=2)]
  else:  # horsebit
    shapes += [fill(METAL, _rect(-0.3, strap_y - 0.02, -0.07, strap_y + 0.015), layer=2)]
    shapes += [line(METAL, _ellipse(x, strap_y, 0.04, 0.04, 12), closed=True,
                    width=DETAIL_WIDTH, layer=2) for x in (-0.33, -0.04)]
  return shapes + base


# Bags: front view.
def _handle(x0: float, x1: float, y: float, height: float, role: str = SHADE,
            width: float = STRAP_WIDTH) -> Shape:
  """A loop handle from (x0, y) to (x1, y) rising ``height`` above."""
  cx, rx = (x0 + x1) / 2, abs(x1 - x0) / 2
  return line(role, _arc(cx, y, rx, height, 180, 360, 16), width=width)


def _draw_tote_bag(a: Mapping[str, str]) -> list[Shape]:
  long_handle = a['handle'] == 'long-handle'
  body = _pts((-0.46, 0.0), (0.46, 0.0), (0.4, 0.82), (-0.4, 0.82))
  height = 0.75 if long_handle else 0.3
  shapes = [_handle(-0.3, -0.12, 0.02, height), _handle(0.12, 0.3, 0.02, height),
            fill(BODY, body, layer=1), line(LINE, [(-0.455, 0.06), (0.455, 0.06)], layer=1)]
  for x in (-0.3, -0.12, 0.12, 0.3):
    shapes.append(fill(SHADE, _rect(x - 0.025, 0.0, x + 0.025, 0.1), layer=1))
  if a['pocket'] == 'front-pocket':
    shapes += [fill(BODY, _rect(-0.26, 0.36, 0.26, 0.7), layer=2),
               line(LINE, [(-0.26, 0.4), (0.26, 0.4)], layer=2)]
  return shapes


def _draw_backpack(a: Mapping[str, str]) -> list[Shape]:
  body = np.concatenate([_arc(0.0, 0.25, 0.38, 0.25, 180, 360, 16),
                         _arc(0.3, 0.95, 0.08, 0.08, 0, 90, 5), _arc(-0.3, 0.95, 0.08, 0.08, 90, 180, 5)])
  shapes = [_handle(-0.1, 0.1, 0.02, 0.14, width=STRAP_WIDTH * 0.8),
            fill(BODY, body, layer=1)]
  shapes += _both_sides([fill(SHADE, _pts((0.38, 0.3), (0.45, 0.32), (0.43, 0.98), (0.37, 0.95)))])
  if a['flap'] == 'zip-top':
    shapes += [line(METAL, _arc(0.0, 0.27, 0.31, 0.2, 190, 350, 14), width=DETAIL_WIDTH, layer=2),
               fill(METAL, _rect(0.25, 0.16, 0.28, 0.26), layer=2)]
  else:
    flap = np.concatenate([_arc(0.0, 0.25, 0.385, 0.25, 180, 360, 16),
                           _arc(0.26, 0.42, 0.12, 0.1, 0, 90, 5), _arc(-0.26, 0.42, 0.12, 0.1, 90, 180, 5)])
    shapes.append(fill(BODY, flap, layer=2))
    for x in (-0.17, 0.17):
      shapes += [fill(SHADE, _rect(x - 0.03, 0.3, x + 0.03, 0.65), layer=3),
                 fill(METAL, _rect(x - 0.04, 0.47, x + 0.04, 0.52), layer=3)]
  if a['pocket'] == 'front-pocket':
    pocket = np.concatenate([_pts((-0.26, 0.66), (0.26, 0.66)),
                             _arc(0.18, 0.88, 0.08, 0.08, 0, 90, 5), _arc(-0.18, 0.88, 0.08, 0.08, 90, 180, 5)])
    shapes += [fill(BODY, pocket, layer=4),
               line(METAL, [(-0.22, 0.71), (0.22, 0.71)], width=DETAIL_WIDTH, layer=4)]
  return shapes


def _draw_crossbody_bag(a: Mapping[str, str]) -> list[Shape]:
  half_w, height = 0.42, 0.52
  body = np.concatenate([_pts((-half_w, 0.0), (half_w, 0.0)),
                         _arc(half_w - 0.07, height - 0.07, 0.07, 0.07, 0, 90, 5),
                         _arc(-half_w + 0.07, height - 0.07, 0.07, 0.07, 90, 180, 5)])
  strap_path = np.concatenate([_pts((-half_w + 0.04, 0.02)),
                               _arc(0.0, 0.0, half_w - 0.04, 0.85, 180, 360, 20)[1:-1],
                               _pts((half_w - 0.04, 0.02))])
  shapes = []
  if a['bag_strap'] == 'chain-strap':
    d = np.linalg.norm(np.diff(strap_path, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(d)])
    for pos in np.arange(0.0, s[-1], 0.045):
      x, y = np.interp(pos, s, strap_path[:, 0]), np.interp(pos, s, strap_path[:, 1])
      shapes.append(line(METAL, _ellipse(x, y, 0.022, 0.022, 8), closed=True,
                         width=DETAIL_WIDTH * 0.9))
  else:
    shapes.append(line(SHADE, strap_path, width=STRAP_WIDTH * 0.7))
  shapes.append(fill(BODY, body, layer=1))
  if a['flap'] == 'envelope-flap':
    flap, clasp = _pts((-half_w, 0.0), (half_w, 0.0), (0.0, 0.36)), (0.0, 0.32)
  else:
    flap = np.concatenate([_pts((-half_w, 0.0), (half_w, 0.0)), _arc(0.0, 0.08, half_w, 0.22, 0, 180, 16)])
    clasp = (0.0, 0.26)
  shapes += [fill(BODY, flap, layer=2), fill(METAL, _ellipse(*clasp, 0.035, 0.035, 12), layer=3)]
  return shapes


# Hats.
def _draw_beanie(a: Mapping[str, str]) -> list[Shape]:
  slouchy = a['fit'] == 'slouchy'
  bottom = 0.62
  if slouchy:
    crown = np.concatenate([_pts((-0.44, bottom)),
                            _bezier((-0.45, 0.1), (-0.38, -0.32), (0.1, -0.3), 10),
                            _bezier((0.1, -0.3), (0.6, -0.28), (0.6, 0.14), 10)[1:],
                            _bezier((0.6, 0.14), (0.48, 0.2), (0.44, 0.36), 6)[1:],
                            _pts((0.44, bottom))])
  else:
    crown = np.concatenate([_pts((-0.44, bottom)), _arc(0.0, 0.25, 0.44, 0.45, 180, 360, 20),
                            _pts((0.44, bottom))])
  shapes = [fill(BODY, crown)]
  for x in np.linspace(-0.3, 0.3, 5):
    shapes.append(line(LINE, [(x, bottom - 0.05), (x * (1.25 if slouchy else 0.9), 0.05)], layer=1))
  if a['cuff'] == 'cuffed':
    shapes += _hem_band(0.46, bottom - 0.2, bottom, n_ribs=16, layer=2)
  else:
    shapes += _hem_band(0.445, bottom - 0.06, bottom, n_ribs=20, layer=2)
  return shapes


def _draw_baseball_cap(a: Mapping[str, str]) -> list[Shape]:
  crown_h = 0.34 if a['height'] == 'low-profile' else 0.48
  crown = np.concatenate([_arc(0.05, 0.4, 0.42, crown_h, 180, 360, 20), _pts((0.47, 0.44), (-0.37, 0.44))])
  if a['brim'] == 'curved-brim':
    brim = np.concatenate([_bezier((-0.35, 0.37), (-0.62, 0.36), (-0.84, 0.56), 8),
                           _bezier((-0.84, 0.63), (-0.62, 0.47), (-0.35, 0.47), 8)])
  else:
    brim = _pts((-0.35, 0.38), (-0.88, 0.4), (-0.88, 0.47), (-0.35, 0.47))
  shapes = [fill(BODY, brim), fill(BODY, crown, layer=1)]
  shapes += [line(LINE, _arc(0.05, 0.4, rx, crown_h, 185, 355, 12), layer=1) for rx in (0.16, 0.3)]
  shapes.append(line(LINE, [(0.05, 0.4 - crown_h), (0.05, 0.42)], layer=1))
  shapes.append(fill(TRIM, _ellipse(0.05, 0.4 - crown_h, 0.035, 0.02, 10), layer=2))
  shapes.append(fill(SHADE, _ellipse(0.24, 0.4 - crown_h * 0.7, 0.018, 0.018, 8), layer=2))
  shapes.append(line(LINE, [(-0.37, 0.4), (0.47, 0.4)], layer=1))
  return shapes


# ----------------------------------------------------------------------------
# The catalog: main category -> sub-categories -> drawer + attributes.
# ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SubCategory:
  """One sub-category: a silhouette and the attributes its items vary in.

  Attributes:
    name: the class name, upper case as in Fashion-Gen (e.g. 'T-SHIRTS').
    nouns: the noun of titles first, then synonyms for descriptions.
    plural: the noun is plural ('sneakers', 'trousers').
    attributes: (kind, allowed values) pairs, in the order titles name them;
      kinds and values are keys of ATTRIBUTE_PHRASES.
    draw: attribute values {kind: value} -> shapes.
    details: sentences about features every item of the sub-category shows.
  """

  name: str
  nouns: tuple[str, ...]
  plural: bool
  attributes: tuple[tuple[str, tuple[str, ...]], ...]
  draw: Callable[[Mapping[str, str]], list[Shape]]
  details: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class MainCategory:
  name: str
  subcategories: tuple[SubCategory, ...]


_SLEEVES = ('sleeveless', 'short-sleeve', 'long-sleeve')
_FIT = ('fit', ('cropped', 'longline'))
_BELT = ('belt', ('belted', 'unbelted'))

CATALOG: tuple[MainCategory, ...] = (
    MainCategory('TOPS', (
        SubCategory('T-SHIRTS', ('t-shirt', 'tee', 'jersey tee'), False,
                    (('sleeve', _SLEEVES), ('neckline', ('crew-neck', 'v-neck'))),
                    _draw_t_shirt, ('Ribbed neckband.', 'Stitched hem.', 'Tonal stitching.')),
        SubCategory('TANK TOPS', ('tank top', 'tank', 'vest top'), False,
                    (('strap', ('thin-strap', 'wide-strap')),
                     ('neckline', ('scoop-neck', 'v-neck'))),
                    _draw_tank_top, ('Ribbed trim at neckline.', 'Stitched hem.')),
        SubCategory('SHIRTS', ('shirt', 'button-up shirt', 'button-down shirt'), False,
                    (('sleeve', ('short-sleeve', 'long-sleeve')),
                     ('collar', ('point-collar', 'band-collar'))),
                    _draw_shirt, ('Button closure at front.', 'Patch pocket at chest.',
                                  'Shirttail hem.')),
    )),
    MainCategory('SWEATERS', (
        SubCategory('PULLOVERS', ('sweater', 'pullover', 'jumper'), False,
                    (_FIT, ('neckline', ('crew-neck', 'v-neck', 'turtleneck'))),
                    _draw_sweater, ('Rib knit cuffs and hem.', 'Dropped shoulders.')),
        SubCategory('HOODIES', ('hoodie', 'hooded sweatshirt'), False,
                    (_FIT, ('closure', ('pullover', 'zip-up'))),
                    _draw_hoodie, ('Drawstring at hood.', 'Rib knit cuffs and hem.')),
        SubCategory('CARDIGANS', ('cardigan', 'button-up cardigan', 'knit cardigan'), False,
                    (_FIT, ('neckline', ('crew-neck', 'v-neck'))),
                    _draw_cardigan, ('Button closure at front.', 'Rib knit hem and cuffs.')),
    )),
    MainCategory('JACKETS & COATS', (
        SubCategory('BLAZERS', ('blazer', 'tailored jacket', 'suit jacket'), False,
                    (('closure', ('single-breasted', 'double-breasted')),
                     ('lapel', ('notch-lapel', 'peak-lapel'))),
                    _draw_blazer, ('Flap pockets at waist.', 'Welt pocket at chest.',
                                   'Buttoned cuffs.')),
        SubCategory('PUFFER JACKETS', ('puffer jacket', 'down jacket', 'quilted jacket'), False,
                    (_FIT, ('collar', ('hooded', 'stand-collar'))),
                    _draw_puffer_jacket, ('Channel quilting throughout.',
                                          'Zip closure at front.')),
        SubCategory('COATS', ('coat', 'overcoat', 'topcoat'), False,
                    (('length', ('knee-length', 'ankle-length')),
                     ('closure', ('single-breasted', 'double-breasted'))),
                    _draw_coat, ('Notch lapels.', 'Flap pockets at waist.',
                                 'Tabs at cuffs.')),
    )),
    MainCategory('DRESSES', (
        SubCategory('A-LINE DRESSES', ('A-line dress', 'flared dress', 'skater dress'), False,
                    (('sleeve', _SLEEVES), ('length', ('mini', 'midi', 'maxi'))),
                    _draw_a_line_dress, ('Seam at waist.', 'Flared skirt.',
                                         'Crew neckline.')),
        SubCategory('SHEATH DRESSES', ('sheath dress', 'fitted dress', 'bodycon dress'), False,
                    (('neckline', ('crew-neck', 'v-neck')),
                     ('length', ('mini', 'knee-length', 'midi'))),
                    _draw_sheath_dress, ('Sleeveless.', 'Darts at waist.', 'Vent at hem.')),
        SubCategory('SLIP DRESSES', ('slip dress', 'camisole dress', 'cami dress'), False,
                    (('neckline', ('straight-neck', 'v-neck')),
                     ('length', ('mini', 'midi', 'maxi'))),
                    _draw_slip_dress, ('Spaghetti straps.', 'Flared hem.')),
    )),
    MainCategory('SKIRTS', (
        SubCategory('PLEATED SKIRTS', ('pleated skirt', 'pleat skirt', 'knife-pleated skirt'), False,
                    (_BELT, ('length', ('mini', 'midi', 'maxi'))),
                    _draw_pleated_skirt, ('Knife pleats throughout.', 'Waistband at top.')),
        SubCategory('PENCIL SKIRTS', ('pencil skirt', 'straight skirt', 'fitted skirt'), False,
                    (_BELT, ('length', ('mini', 'knee-length', 'midi'))),
                    _draw_pencil_skirt, ('Vent at hem.', 'Darts at waist.')),
    )),
    MainCategory('PANTS', (
        SubCategory('TROUSERS', ('trousers', 'pants', 'slacks'), True,
                    (('length', ('cropped', 'full-length')), ('leg', ('slim-leg', 'wide-leg'))),
                    _draw_trousers, ('Belt loops at waistband.', 'Slant pockets at hips.',
                                     'Pressed creases.')),
        SubCategory('JOGGERS', ('joggers', 'sweatpants', 'track pants'), True,
                    (('length', ('cropped', 'full-length')),
                     ('pocket', ('zip-pocket', 'slant-pocket'))),
                    _draw_joggers, ('Drawstring at elasticated waistband.',
                                    'Rib knit cuffs at leg openings.')),
        SubCategory('SHORTS', ('shorts', 'bermuda shorts', 'chino shorts'), True,
                    (('length', ('mid-thigh', 'knee-length')), ('hem', ('cuffed', 'plain-hem'))),
                    _draw_shorts, ('Belt loops at waistband.', 'Zip fly.')),
    )),
    MainCategory('SHOES', (
        SubCategory('SNEAKERS', ('sneakers', 'trainers', 'low-tops'), True,
                    (('height', ('low-top', 'high-top')),
                     ('fastening', ('lace-up', 'velcro-strap'))),
                    _draw_sneakers, ('White rubber sole.', 'Round toe.', 'Heel tab.')),
        SubCategory('BOOTS', ('boots', 'leather boots'), True,
                    (('heel', ('flat', 'mid-heel', 'high-heel')),
                     ('height', ('ankle', 'knee-high'))),
                    _draw_boots, ('Black rubber sole.', 'Pull-loop at heel collar.',
                                  'Zip closure at side.')),
        SubCategory('PUMPS', ('pumps', 'court shoes', 'heels'), True,
                    (('heel', ('mid-heel', 'high-heel')), ('toe', ('pointed-toe', 'round-toe'))),
                    _draw_pumps, ('Slip-on style.', 'Tonal sole.')),
        SubCategory('LOAFERS', ('loafers', 'slip-on loafers', 'moccasins'), True,
                    (('heel', ('flat', 'mid-heel')),
                     ('vamp', ('penny-strap', 'tassel', 'horsebit'))),
                    _draw_loafers, ('Moc-toe stitching.', 'Slip-on style.',
                                    'Black rubber sole.')),
    )),
    MainCategory('BAGS', (
        SubCategory('TOTE BAGS', ('tote bag', 'tote', 'shopper bag'), False,
                    (('handle', ('short-handle', 'long-handle')),
                     ('pocket', ('front-pocket', 'pocketless'))),
                    _draw_tote_bag, ('Open top.', 'Twin handles.')),
        SubCategory('BACKPACKS', ('backpack', 'rucksack'), False,
                    (('flap', ('zip-top', 'flap-top')), ('pocket', ('front-pocket', 'pocketless'))),
                    _draw_backpack, ('Carry handle at top.', 'Shoulder straps at sides.')),
        SubCategory('CROSSBODY BAGS', ('crossbody bag', 'shoulder bag', 'messenger bag'), False,
                    (('flap', ('envelope-flap', 'rounded-flap')),
                     ('bag_strap', ('chain-strap', 'leather-strap'))),
                    _draw_crossbody_bag, ('Press-stud clasp at flap.', 'Gold-tone hardware.')),
    )),
    MainCategory('HATS', (
        SubCategory('BEANIES', ('beanie', 'knit hat', 'knit beanie'), False,
                    (('cuff', ('cuffed', 'uncuffed')), ('fit', ('fitted', 'slouchy'))),
                    _draw_beanie, ('Rib knit throughout.',)),
        SubCategory('CAPS', ('baseball cap', 'cap', 'six-panel cap'), False,
                    (('height', ('low-profile', 'high-profile')),
                     ('brim', ('curved-brim', 'flat-brim'))),
                    _draw_baseball_cap, ('Button at crown.', 'Stitched panels.',
                                         'Eyelet vents.')),
    )),
)

_SUBCATEGORIES: dict[str, SubCategory] = {
    s.name: s for m in CATALOG for s in m.subcategories}


def main_categories() -> list[str]:
  """The main category names, in a fixed order (a class list)."""
  return [m.name for m in CATALOG]


def sub_categories() -> list[str]:
  """The sub-category names of all main categories, in a fixed order (a class list)."""
  return [s.name for m in CATALOG for s in m.subcategories]


def _check_catalog() -> None:
  """Fails at import when CATALOG and ATTRIBUTE_PHRASES do not fit together."""
  names = sub_categories()
  if len(set(names)) != len(names):
    raise SyntheticCatalogError('CATALOG: sub-category names are not unique')
  for sub in _SUBCATEGORIES.values():
    for kind, values in sub.attributes:
      for value in values:
        if value not in ATTRIBUTE_PHRASES.get(kind, {}):
          raise SyntheticCatalogError(
              f'CATALOG: {sub.name}: attribute {kind}={value!r} has no phrases')


_check_catalog()


# ----------------------------------------------------------------------------
# Products: sampling and captions.
# ----------------------------------------------------------------------------

# Stream tags of the per-item random generators (distinct, non-zero: numpy's
# SeedSequence treats [a, b] and [a, b, 0] alike).
_PRODUCT_STREAM = 1
_VIEW_COUNT_STREAM = 2
_VIEW_STREAM = 3
_MAX_SEED = 2 ** 32  # seeds and indices are single 32-bit words


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


def _pick(rng: np.random.Generator, options: Sequence):
  return options[int(rng.integers(len(options)))]


def _a(word: str) -> str:
  """'a' or 'an' for the word that follows."""
  return 'an' if word[:1].lower() in 'aeio' else 'a'


def _join(phrases: Sequence[str]) -> str:
  """'x', 'x and y', 'x, y and z'."""
  return phrases[0] if len(phrases) == 1 else ', '.join(phrases[:-1]) + ' and ' + phrases[-1]


def _capitalise(text: str) -> str:
  return text[:1].upper() + text[1:]


def _write_caption(sub: SubCategory, attributes: Mapping[str, str],
                   rng: np.random.Generator) -> tuple[str, str]:
  """(title, description) of a product, Fashion-Gen style.

  The title names every attribute value verbatim; the description names them
  again with synonyms, in 1-3 sentences from several templates.
  """
  colour, pattern = attributes['colour'], attributes['pattern']
  values = [attributes[kind] for kind, _ in sub.attributes]
  noun = sub.nouns[0]
  if pattern == SOLID:
    title = f'solid {colour} {" ".join(values)} {noun}'
  else:
    title = f'{colour} {" ".join(values)} {noun} with {attributes["pattern_colour"]} {pattern}'

  # Description words.
  colour_word = _pick(rng, COLOUR_SYNONYMS[colour])
  noun_word = _pick(rng, sub.nouns)
  features = _join([_pick(rng, ATTRIBUTE_PHRASES[kind][attributes[kind]])
                    for kind, _ in sub.attributes])
  this, is_, comes = ('These', 'are', 'come') if sub.plural else ('This', 'is', 'comes')
  if pattern == SOLID:
    solid_word = _pick(rng, PATTERN_SYNONYMS[SOLID])
    det = '' if sub.plural else _a(noun_word) + ' '
    colour_sentence = _pick(rng, (
        f'{colour_word} {noun_word} in a {solid_word} colour.',
        f'{noun_word} in {solid_word} {colour_word}.',
        f'Made in {solid_word} {colour_word}.',
        f'{this} {noun_word} {comes} in {solid_word} {colour_word}.'))
    merged = f'{det}{noun_word} in {solid_word} {colour_word} with {features}.'
  else:
    accent = _pick(rng, COLOUR_SYNONYMS[attributes['pattern_colour']])
    motif = f'{accent} {_pick(rng, PATTERN_SYNONYMS[pattern])}'
    det = '' if sub.plural else _a(colour_word) + ' '
    colour_sentence = _pick(rng, (
        f'{colour_word} {noun_word} with {motif}.',
        f'Made in {colour_word} with {motif} throughout.',
        f'{this} {noun_word} {is_} {colour_word} with {motif}.',
        f'{motif} on a {colour_word} ground.'))
    merged = f'{det}{colour_word} {noun_word} with {motif}, featuring {features}.'
  feature_sentence = _pick(rng, (f'Features {features}.', f'Designed with {features}.',
                                 f'Detailed with {features}.', f'Cut with {features}.'))
  detail_sentence = _pick(rng, sub.details)
  layout = int(rng.integers(4))
  sentences = ([merged], [colour_sentence, feature_sentence],
               [colour_sentence, feature_sentence, detail_sentence],
               [merged, detail_sentence])[layout]
  return _capitalise(title), ' '.join(_capitalise(s) for s in sentences)


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
  return SyntheticProduct(product_id=f'syn{seed}-{index:07d}', category=main.name,
                          subcategory=sub.name, attributes=attributes, title=title,
                          description=description)


# ----------------------------------------------------------------------------
# Rendering.
# ----------------------------------------------------------------------------

WHITE = (255, 255, 255)
SUPERSAMPLE = 2            # draw at this multiple of the size, then box-downsample (antialiasing)
FILL_FRACTION = 0.86       # canonical view: the garment's longer side spans this share of the frame
MARGIN_FRACTION = 0.02     # views keep the garment this far from the frame's edges
PATTERN_PERIOD = 0.09      # stripe / dot / check period, as a share of the frame
STRIPE_DUTY = 0.45         # share of a period taken by a stripe or check band
DOT_RADIUS = 0.24          # polka dot radius, as a share of the period
CHECK_MIX = 0.5            # check bands: this mix of the pattern colour into the main one
VIEW_ROTATION_DEG = (3.0, 10.0)  # views > 0: rotation magnitude range
VIEW_SCALE = (0.78, 0.96)        # views > 0: scale range (1 = canonical)
VIEW_SHIFT = 0.07                # views > 0: largest shift, share of the frame
DARK_LUMINANCE = 70.0            # colours darker than this get lighter (not darker) details


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
  return {BODY: main, SHADE: shade, TRIM: trim, LINE: seam, SOLE_LIGHT: (238, 236, 230),
          SOLE_DARK: (38, 36, 35), METAL: (196, 164, 82),
          LACE: (60, 60, 60) if luminance > 170 else (246, 246, 246)}


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
        f'product {product.product_id}: unknown sub-category {product.subcategory!r}')
  for key in ('colour', 'pattern'):
    if key not in product.attributes:
      raise SyntheticCatalogError(f'product {product.product_id}: no {key!r} attribute')
  if product.attributes['colour'] not in COLOURS:
    raise SyntheticCatalogError(
        f'product {product.product_id}: unknown colour {product.attributes["colour"]!r}')
  if product.attributes['pattern'] not in PATTERNS:
    raise SyntheticCatalogError(
        f'product {product.product_id}: unknown pattern {product.attributes["pattern"]!r}')
  if (product.attributes['pattern'] != SOLID
      and product.attributes.get('pattern_colour') not in COLOURS):
    raise SyntheticCatalogError(
        f'product {product.product_id}: pattern {product.attributes["pattern"]!r} needs a '
        f'known pattern_colour, got {product.attributes.get("pattern_colour")!r}')
  values = []
  for kind, allowed in sub.attributes:
    value = product.attributes.get(kind)
    if value not in allowed:
      raise SyntheticCatalogError(
          f'product {product.product_id}: {sub.name} needs {kind} in {allowed}, got {value!r}')
    values.append(value)
  key = (sub.name, tuple(values))
  if key not in _SILHOUETTE_CACHE:
    shapes = tuple(sub.draw(dict(zip((k for k, _ in sub.attributes), values))))
    points = np.concatenate([s.points for s in shapes])
    bbox = (*points.min(axis=0), *points.max(axis=0))
    _SILHOUETTE_CACHE[key] = _Silhouette(shapes, tuple(float(v) for v in bbox))
  return _SILHOUETTE_CACHE[key]


def _view_transform(bbox: Sequence[float], size: int,
                    rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
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


def _pattern_primitives(pattern: str, bbox: Sequence[float], period: float
                        ) -> list[tuple[str, np.ndarray]]:
  """(colour key, polygons [n, k, 2]) groups of a pattern covering ``bbox`` (design units).

  Colour keys: 'accent' (the pattern colour) and 'mix' (the bands of checks).
  """
  x0, y0, x1, y1 = bbox
  x0, y0, x1, y1 = x0 - period, y0 - period, x1 + period, y1 + period
  band = STRIPE_DUTY * period
  rows, columns = np.arange(y0, y1, period), np.arange(x0, x1, period)

  def rects(left, top, right, bottom):  # each argument: [n] -> [n, 4, 2]
    return np.stack([np.stack([left, top], -1), np.stack([right, top], -1),
                     np.stack([right, bottom], -1), np.stack([left, bottom], -1)], axis=1)

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
    return [('mix', horizontal()), ('mix', vertical()),
            ('accent', rects(xs, ys, xs + band, ys + band))]
  if pattern == 'diagonal stripes':
    width = band * math.sqrt(2)  # measured along x, so that stripes are `band` thick
    c = np.arange(x0 - (y1 - y0), x1, period * math.sqrt(2))
    polygons = np.stack([np.stack([c + y0, np.full_like(c, y0)], -1),
                         np.stack([c + width + y0, np.full_like(c, y0)], -1),
                         np.stack([c + width + y1, np.full_like(c, y1)], -1),
                         np.stack([c + y1, np.full_like(c, y1)], -1)], axis=1)
    return [('accent', polygons)]
  if pattern == 'polka dots':
    dot_rows = np.arange(y0, y1, period * 0.87)
    xs, ys = np.meshgrid(columns, dot_rows)
    xs = xs + (np.arange(dot_rows.size) % 2)[:, None] * period / 2
    centres = np.stack([xs.ravel(), ys.ravel()], -1)  # [n, 2]
    return [('accent', centres[:, None, :] + DOT_RADIUS * period * _UNIT_DOT[None])]
  return []


def _render(silhouette: _Silhouette, attributes: Mapping[str, str], size: int,
            matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
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


def render_view(product: SyntheticProduct, view: int, seed: int,
                image_size: int = 256) -> np.ndarray:
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
  rng = np.random.default_rng([_check_word('seed', seed, 0, _MAX_SEED),
                               _check_word('index', index, 0, _MAX_SEED), _VIEW_COUNT_STREAM])
  return 1 + int(rng.integers(max_views))


def generate_catalog(num_products: int, seed: int, image_size: int = 256,
                     max_views: int = 4) -> Iterator[dict]:
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


# ----------------------------------------------------------------------------
# Debug entry: contact sheets for a person to look at.
# ----------------------------------------------------------------------------

def _contact_sheet(images: Sequence[np.ndarray], labels: Sequence[str], columns: int,
                   label_lines: int = 3, font_size: int = 11) -> Image.Image:
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


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--out', required=True, help='directory for the PNG contact sheets')
  parser.add_argument('--num_products', type=int, default=24)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--first', type=int, default=0, help='index of the first product shown')
  parser.add_argument('--image_size', type=int, default=256)
  parser.add_argument('--max_views', type=int, default=4)
  parser.add_argument('--columns', type=int, default=6)
  args = parser.parse_args(argv)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  try:
    products = [sample_product(i, args.seed)
                for i in range(args.first, args.first + args.num_products)]
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
  print(f'wrote {out / "contact_sheet.png"} and {out / "views_sheet.png"}; '
        f'{1e3 * elapsed / len(products):.2f} ms per {args.image_size}px image')
  for p in products[:6]:
    print(f'{p.product_id} {p.category} / {p.subcategory}: {p.title} | {p.description}')


if __name__ == '__main__':
  main()
