"""Building blocks of upper-body garments: torso, sleeves, necklines, hoods, lapels.

Flat lay, front view; y = 0 at the top of the shoulders, x = 0 on the centre
front.
"""

from __future__ import annotations

import math

import numpy as np

from input_pipeline.synthetic_render.shapes import (
    BODY,
    LINE,
    SEAM_WIDTH,
    SHADE,
    TRIM,
    Shape,
    _arc,
    _bezier,
    _both_sides,
    _ellipse,
    _pts,
    _symmetric,
    fill,
    line,
)


def _torso(
    neck_w: float,
    shoulder: tuple[float, float],
    armpit: tuple[float, float],
    hem_w: float,
    length: float,
    *,
    back_neck: float = 0.035,
    armhole_inset: float = 0.0,
    waist: tuple[float, float] | None = None,
    hem_curve: float = 0.0,
    side_points: np.ndarray | None = None,
) -> np.ndarray:
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


def _sleeve(
    shoulder,
    armpit,
    angle_deg: float,
    length: float,
    cuff_w: float,
    cuff_h: float = 0.0,
    hem_stitch: bool = True,
    layer: int = 0,
) -> list[Shape]:
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


def _neckline(
    kind: str,
    neck_w: float,
    *,
    back_neck: float = 0.035,
    depth: float | None = None,
    band: float = 0.03,
    layer: int = 0,
) -> list[Shape]:
  """The front neckline of a top: the inside of the back (SHADE) and a neckband.

  Kinds: crew-neck, v-neck, scoop-neck, turtleneck.
  """
  back = _arc(0.0, 0.0, neck_w, back_neck, 180, 0, 10)  # (-neck_w, 0) -> (neck_w, 0)
  if kind == 'turtleneck':
    top, bottom = -0.17, 0.05
    collar = np.concatenate(
        [
            _pts((-neck_w - 0.02, top), (neck_w + 0.02, top)),
            _arc(0.0, 0.0, neck_w + 0.03, bottom, 0, 180, 10),
        ]
    )
    fold = _arc(0.0, top + 0.07, neck_w + 0.025, 0.02, 0, 180, 8)
    shapes = [
        fill(SHADE, np.concatenate([back, back[::-1] * [1, 0]]), layer=layer),
        fill(TRIM, collar, layer=layer + 1),
        line(LINE, fold, layer=layer + 1),
        fill(SHADE, _ellipse(0.0, top, neck_w + 0.01, 0.03, 16), layer=layer + 1),
    ]
    xs = np.linspace(-neck_w, neck_w, 7)
    shapes += [
        line(
            LINE,
            [(x, top + 0.09), (x * 1.1, bottom - 0.01)],
            width=SEAM_WIDTH * 0.8,
            layer=layer + 1,
        )
        for x in xs
    ]
    return shapes
  if kind == 'v-neck':
    depth = 0.3 if depth is None else depth
    front = _pts((neck_w, 0.0), (0.0, depth), (-neck_w, 0.0))
    outer = _pts((-neck_w - band, 0.0), (0.0, depth + band * 1.6), (neck_w + band, 0.0))
  else:
    depth = {'crew-neck': 0.11, 'scoop-neck': 0.26}[kind] if depth is None else depth
    front = _arc(0.0, 0.0, neck_w, depth, 0, 180, 14)
    outer = _arc(0.0, 0.0, neck_w + band, depth + band, 180, 0, 14)
  return [
      fill(SHADE, np.concatenate([back, front]), layer=layer),
      fill(TRIM, np.concatenate([front, outer]), layer=layer),
  ]


def _hem_band(
    half_w: float,
    y0: float,
    y1: float,
    n_ribs: int = 14,
    layer: int = 0,
    bottom_half_w: float | None = None,
) -> list[Shape]:
  """A ribbed band across the body (sweater hems, waistbands)."""
  bottom_half_w = half_w if bottom_half_w is None else bottom_half_w
  band = _pts((-half_w, y0), (half_w, y0), (bottom_half_w, y1), (-bottom_half_w, y1))
  return [fill(TRIM, band, layer=layer)] + _rib_lines(band[[0, 1]], band[[3, 2]], n_ribs, layer)


def _hood(layer: int = 0, open_front: bool = False) -> list[Shape]:
  """A hood lying flat above the shoulders (behind the body: give it a lower layer)."""
  outer = np.concatenate(
      [_pts((-0.17, 0.12)), _arc(0.0, -0.1, 0.25, 0.3, 150, 390, 24)[1:-1], _pts((0.17, 0.12))]
  )
  opening = np.concatenate(
      [
          _arc(0.0, -0.07, 0.15, 0.2, 180, 360, 14),
          _pts((0.12, 0.06), (0.02 if open_front else 0.0, 0.16)),
          _pts((-0.02, 0.16)) if open_front else np.zeros((0, 2)),
          _pts((-0.12, 0.06)),
      ]
  )
  return [
      fill(BODY, outer, layer=layer),
      fill(SHADE, opening, layer=layer + 1),
      line(LINE, _arc(0.0, -0.07, 0.18, 0.23, 190, 350, 12), layer=layer + 1),
  ]


def _lapels(peak: bool, roll_y: float, neck_w: float = 0.12, layer: int = 2) -> list[Shape]:
  """Notch or peak lapels and the opening between them (tailored jackets, coats)."""
  opening = _pts((-neck_w, 0.0), (neck_w, 0.0), (0.0, roll_y))
  if peak:
    right = _pts(
        (neck_w - 0.01, -0.02),
        (neck_w + 0.07, 0.1),
        (neck_w + 0.18, 0.05),
        (neck_w + 0.12, 0.2),
        (0.025, roll_y),
        (0.0, roll_y - 0.04),
    )
  else:
    right = _pts(
        (neck_w - 0.01, -0.02),
        (neck_w + 0.06, 0.09),
        (neck_w + 0.04, 0.13),
        (neck_w + 0.13, 0.16),
        (0.025, roll_y),
        (0.0, roll_y - 0.04),
    )
  return [fill(SHADE, opening, layer=layer - 1)] + _both_sides([fill(BODY, right, layer=layer)])
