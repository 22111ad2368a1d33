"""Shapes: what a drawer returns, and the primitives drawers build them from.

Coordinates are "design units" (x right, y down, roughly a unit box); the
renderer fits them to the frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

# Colour roles of shapes (resolved by _palette()).
BODY = 'body'  # the garment fabric: main colour with the pattern
SHADE = 'shade'  # the inside of the garment / dark parts (main colour, darker)
TRIM = 'trim'  # ribbing, waistbands, cuffs (main colour, slightly darker)
LINE = 'line'  # seams, outlines, stitching (main colour, much darker)
SOLE_LIGHT = 'sole_light'  # white rubber soles
SOLE_DARK = 'sole_dark'  # black rubber soles and heels
METAL = 'metal'  # zips, buckles, chains (gold-tone)
LACE = 'lace'  # shoe laces (contrasting with the main colour)

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


def line(
    role: str, points, *, width: float = SEAM_WIDTH, layer: int = 0, closed: bool = False
) -> Shape:
  """An open polyline (``closed=True``: the polyline goes back to its start)."""
  points = np.asarray(points, np.float64)
  if closed:
    points = np.concatenate([points, points[:1]])
  return Shape(role, points, False, width, False, layer)


def _arc(
    cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, n: int = 12
) -> np.ndarray:
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
  return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


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
